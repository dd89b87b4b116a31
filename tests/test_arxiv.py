"""`newsletter issue add ISSUE ARXIV_ID…` (#25): papers from arXiv's API into an issue file, against a local server
replaying recorded Atom answers (tests/arxivd.py); no network, no real sleeping."""

from __future__ import annotations

import shutil
import stat
import threading
import time
import tomllib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from click.testing import CliRunner
from starlette.testclient import TestClient

from newsletter.arxiv import Client, client_for, parse_feed
from newsletter.config import Config, load_config
from newsletter.errors import ArxivError
from newsletter.mailsink import free_port
from newsletter.papers import add_papers, code_link, draft, venue
from newsletter.web.live import LivePreview, LiveServer, create_live_app

from .arxivd import DATA, ArxivServer, arxiv_server
from .conftest import REPO, invoke

ISSUE = "2026-05-28"
SDAR, CAUSAL, OLYMPIAD, SENSENOVA, MEMPRIVACY = "2605.11876", "2605.10342", "2605.12030", "2605.12114", "2605.11502"


@dataclass
class Desk:
    """An editor's setup: a copy of the shipped issues, a config pointing at the replaying server."""

    config: Path
    issues: Path
    server: ArxivServer
    cache: Path

    @property
    def issue(self) -> Path:
        return self.issues / f"{ISSUE}.toml"

    def loaded(self) -> Config:
        return load_config(self.config)


class Clock:
    """Seconds since the epoch that only move when a test says so; ``sleep`` records and moves them."""

    def __init__(self) -> None:
        self.now, self.slept = 1_800_000_000.0, []  # type: ignore[var-annotated]

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


@pytest.fixture(name="desk")
def desk_fixture(make_config: Callable[..., Path], tmp_path: Path) -> Iterator[Desk]:
    issues = tmp_path / "issues"
    issues.mkdir()
    for name in ("2026-05-17.toml", f"{ISSUE}.toml"):
        shutil.copy(REPO / "issues" / name, issues)
    with arxiv_server() as server:
        config = make_config(f"""
            [arxiv]
            api_url = "{server.url}"
            cache_dir = "{tmp_path / 'arxiv-cache'}"
            [paths]
            issues = "{issues}"
            templates = "{REPO / 'templates' / 'email'}"
            """)
        yield Desk(config, issues, server, tmp_path / "arxiv-cache")


def client(desk: Desk, clock: Clock) -> Client:
    return client_for(desk.loaded(), clock=clock, sleep=clock.sleep)


def papers(path: Path) -> list[dict[str, object]]:
    return tomllib.loads(path.read_text(encoding="utf-8"))["papers"]


def record(arxiv: str):  # type: ignore[no-untyped-def]
    return parse_feed((DATA / f"{arxiv}.xml").read_bytes())[0][0]


# --- through the command line ----------------------------------------------------------------------------------


def test_two_ids_become_two_papers_after_the_untouched_file_and_the_issue_still_checks(desk: Desk,
                                                                                        runner: CliRunner) -> None:
    """Two ids: one request for both, two [[papers]] with the right fields after the file's bytes as they were,
    and `issue check` passes."""
    before = desk.issue.read_bytes()
    out = invoke(runner, desk.config, "issue", "add", ISSUE, SDAR, f"arXiv:{CAUSAL}").output
    assert [line.split()[1] for line in out.splitlines() if line.startswith("added ")] == [SDAR, CAUSAL]
    after = desk.issue.read_bytes()
    assert after.startswith(before)  # every comment, key and byte of the editor's file kept, in order
    sdar, causal = papers(desk.issue)[-2:]
    assert sdar == {
        "title": "Self-Distilled Agentic Reinforcement Learning",
        "authors": ["Zhengxi Lu", "Zhiyuan Yao", "Zhuowen Han", "Zi-Han Wang", "Yuqing Yang"], "et_al": 2,
        "arxiv": SDAR, "status": "accepted", "venue": "ICML 2026", "code": "https://github.com/zhengxi-lu/SDAR",
        "areas": ["LLM", "RL", "Agents"],
        "summary": sdar["summary"]}
    assert str(sdar["summary"]).startswith("Training an LLM agent with reinforcement learning usually gives a reward")
    assert "\n" not in str(sdar["summary"])
    assert (causal["status"], causal["venue"], causal["areas"], "code" in causal) == (
        "accepted", "IEEE TPAMI", ["Vision"], False)
    assert "# doi: 10.1109/TPAMI.2026.3401234" in after.decode()
    assert len(desk.server.requests) == 1
    assert set(desk.server.requests[0]["id_list"].split(",")) == {SDAR, CAUSAL}
    assert desk.server.requests[0]["max_results"] == "2"
    assert "mailto:digest@example.org" in desk.server.requests[0]["user_agent"]
    assert "ok  " in invoke(runner, desk.config, "issue", "check", ISSUE).output


def test_a_second_add_of_the_same_ids_reads_the_cache_and_asks_arxiv_nothing(desk: Desk, runner: CliRunner) -> None:
    """The same ids added to another issue come from the disk cache (0644 JSON files by id): no second request."""
    invoke(runner, desk.config, "issue", "add", ISSUE, SDAR, OLYMPIAD)
    invoke(runner, desk.config, "issue", "add", "2026-05-17", SDAR, OLYMPIAD)
    assert len(desk.server.requests) == 1
    assert papers(desk.issues / "2026-05-17.toml")[-2:] == papers(desk.issue)[-2:]
    kept = desk.cache / f"{SDAR}.json"
    assert stat.S_IMODE(kept.stat().st_mode) == 0o644 and "@" not in kept.read_text(encoding="utf-8")


def test_an_id_already_in_the_issue_is_skipped_with_a_line(desk: Desk, runner: CliRunner) -> None:
    """2605.28760 is paper 1 of the issue: skipped and said so, never asked for; the other id is added."""
    out = invoke(runner, desk.config, "issue", "add", ISSUE, "2605.28760v2", SDAR).output
    assert "skipped 2605.28760v2: already in the issue (paper 1)" in out
    assert [r["id_list"] for r in desk.server.requests] == [SDAR]
    assert [p["arxiv"] for p in papers(desk.issue)].count("2605.28760") == 1


def test_without_network_it_says_so_in_one_line_and_leaves_the_file_untouched(desk: Desk, runner: CliRunner,
                                                                              make_config: Callable[..., Path],
                                                                              tmp_path: Path) -> None:
    """arXiv on a closed port: one line "cannot reach arXiv …", exit 1, the file byte for byte as it was."""
    config = make_config(f"""
        [arxiv]
        api_url = "http://127.0.0.1:{free_port()}/api/query"
        cache_dir = "{tmp_path / 'cache'}"
        [paths]
        issues = "{desk.issues}"
        templates = "{REPO / 'templates' / 'email'}"
        """, name="offline.toml")
    before = desk.issue.read_bytes()
    result = invoke(runner, config, "issue", "add", ISSUE, SDAR, code=1)
    assert len(result.output.strip().splitlines()) == 1
    assert "cannot reach arXiv (127.0.0.1:" in result.output and f"{ISSUE}.toml is unchanged" in result.output
    assert desk.issue.read_bytes() == before


def test_an_unknown_id_is_one_line_and_nothing_is_written_not_even_the_good_one(desk: Desk,
                                                                                runner: CliRunner) -> None:
    """arXiv knows 2605.11876 but not 2605.99999: one line naming the unknown id, exit 1, the file unchanged."""
    before = desk.issue.read_bytes()
    result = invoke(runner, desk.config, "issue", "add", ISSUE, SDAR, "2605.99999", code=1)
    assert result.output.strip().splitlines() == [
        f"Error: 2605.99999: arXiv has no such paper; {ISSUE}.toml is unchanged"]
    assert desk.issue.read_bytes() == before


def test_a_malformed_id_is_refused_before_any_request(desk: Desk, runner: CliRunner) -> None:
    """2611.1234 (four digits after 2015) is told in words, as `issue check` tells it; arXiv is not asked."""
    result = invoke(runner, desk.config, "issue", "add", ISSUE, "2611.1234", code=1)
    assert "since January 2015 the number after the dot has 5 digits" in result.output
    assert desk.server.requests == []


def test_dry_run_prints_the_toml_and_writes_nothing(desk: Desk, runner: CliRunner) -> None:
    """--dry-run prints the [[papers]] it would add, says "would be added", and leaves the file as it was."""
    before = desk.issue.read_bytes()
    out = invoke(runner, desk.config, "issue", "add", ISSUE, OLYMPIAD, "--dry-run").output
    assert out.startswith("[[papers]]\n") and 'title = "Achieving Gold-Medal-Level Olympiad Reasoning' in out
    assert f"would be added {OLYMPIAD}" in out
    assert desk.issue.read_bytes() == before


def test_a_paper_no_area_fits_gets_the_first_area_marked_to_check_and_still_passes(desk: Desk,
                                                                                  runner: CliRunner) -> None:
    """cs.CR / cs.DC meet no configured area: areas = ["LLM"] with "# areas: suggested, check", and check passes."""
    out = invoke(runner, desk.config, "issue", "add", ISSUE, MEMPRIVACY).output
    assert "areas: suggested, check" in out
    assert 'areas = ["LLM"] # areas: suggested, check' in desk.issue.read_text(encoding="utf-8")
    assert papers(desk.issue)[-1]["status"] == "preprint" and "venue" not in papers(desk.issue)[-1]
    invoke(runner, desk.config, "issue", "check", ISSUE)


# --- the client ---------------------------------------------------------------------------------------------------


def test_two_uncached_calls_are_spaced_by_three_seconds_also_across_processes(desk: Desk) -> None:
    """Two requests in a row: the second waits min_interval_seconds (3 s); a new client (another command) on the
    same cache folder waits too; a cached answer waits for nothing."""
    clock = Clock()
    first = client(desk, clock)
    first.fetch([SDAR])
    assert clock.slept == []
    first.fetch([CAUSAL])
    assert clock.slept == [3.0]
    client(desk, clock).fetch([OLYMPIAD])
    assert clock.slept == [3.0, 3.0]
    first.fetch([SDAR, CAUSAL])
    assert clock.slept == [3.0, 3.0] and len(desk.server.requests) == 3


def test_an_id_with_and_without_version_are_two_cache_keys(desk: Desk) -> None:
    """2605.12030 (the latest version) and 2605.12030v2 are kept apart: each asked once, then both from disk."""
    clock = Clock()
    arxiv = client(desk, clock)
    assert arxiv.fetch([OLYMPIAD])[OLYMPIAD].id == "2605.12030v2"
    assert arxiv.fetch([f"{OLYMPIAD}v2"])[f"{OLYMPIAD}v2"].id == "2605.12030v2"
    arxiv.fetch([OLYMPIAD, f"{OLYMPIAD}v2"])
    assert [r["id_list"] for r in desk.server.requests] == [OLYMPIAD, f"{OLYMPIAD}v2"]
    assert {p.name for p in desk.cache.glob("*.json")} == {f"{OLYMPIAD}.json", f"{OLYMPIAD}v2.json"}


def test_arxivs_error_answer_is_one_line_with_its_reason(desk: Desk) -> None:
    """A malformed id that reaches arXiv gets HTTP 400 and an "Error" entry: both in one line, nothing kept."""
    with pytest.raises(ArxivError) as caught:
        client(desk, Clock()).fetch(["2605.1234"])
    assert str(caught.value) == (f"arXiv (127.0.0.1:{desk.server.url.split(':')[2].split('/')[0]}) answered "
                                 "HTTP 400 Bad Request: incorrect id format for 2605.1234")
    assert not list(desk.cache.glob("*.json"))


def test_an_error_entry_in_a_200_answer_is_an_error_too() -> None:
    """arXiv's old API answers a malformed id with 200 and an "Error" entry: read as an error, not as a paper."""
    records, errors = parse_feed((DATA / "error.xml").read_bytes())
    assert records == [] and errors == ["incorrect id format for 2605.1234"]


def test_the_recorded_answers_parse_to_whole_records() -> None:
    """Title and abstract are one line each; primary category first; comment, DOI, journal ref when present."""
    causal = record(CAUSAL)
    assert causal.title == ("Causal Forcing++: Scalable Few-Step Autoregressive Diffusion Distillation for "
                            "Real-Time Interactive Video Generation")
    assert causal.categories == ("cs.CV", "cs.LG") and causal.primary_category == "cs.CV"
    assert causal.doi == "10.1109/TPAMI.2026.3401234" and causal.journal_ref.startswith("IEEE Transactions")
    assert len(record(OLYMPIAD).authors) == 28 and record(SENSENOVA).comment == ""


# --- the mapping --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("comment", "expected"), [
    ("Accepted at ICML 2025", "ICML 2025"),
    ("Accepted to NeurIPS 2024 (Spotlight)", "NeurIPS 2024"),
    ("Accepted by CVPR 2025. Project page: https://example.org/x", "CVPR 2025"),
    ("ICLR 2025 Oral", "ICLR 2025"),
    ("Published as a conference paper at ICLR 2025", "ICLR 2025"),
    ("To appear in the Proceedings of the 42nd International Conference on Machine Learning (ICML 2025)",
     "ICML 2025"),
    ("Accepted to Findings of ACL 2025", "Findings of ACL 2025"),
    ("Accepted at the ICLR 2025 Workshop on Reasoning and Planning for LLMs", "ICLR 2025 Workshop"),
    ("Camera-ready version for EMNLP 2024 main conference", "EMNLP 2024"),
    ("15 pages, 6 figures. Accepted at ICML 2025; code at https://github.com/a/b", "ICML 2025"),
    ("Accepted as a poster at AAAI-25", "AAAI-25"),
    ("Published in Transactions on Machine Learning Research (TMLR)", "TMLR"),
    ("Accepted for publication in IEEE Transactions on Pattern Analysis and Machine Intelligence",
     "IEEE Transactions on Pattern Analysis and Machine Intelligence"),
    ("CVPR 2025 Highlight. Code: https://github.com/a/b", "CVPR 2025"),
    ("Submitted to NeurIPS 2025", None),
    ("Under review at ICLR 2026", None),
    ("Preprint. ICML 2025 submission", None),
    ("Technical report, 38 pages, 9 figures", None),
    ("Code will be published at https://github.com/a/b", None),
    ("Code and models to be published at www.example.org/x; accepted.", None),
    ("", None),
])
def test_comments_give_status_and_venue(comment: str, expected: str | None) -> None:
    """Real comment strings: accepted/to appear/published at VENUE YEAR is accepted; submitted or none is a preprint."""
    assert venue(comment) == expected


def test_a_journal_reference_is_the_venue_when_the_comments_name_none() -> None:
    """A paper with a journal ref is published: that is its venue when the comments say nothing."""
    assert venue("12 pages", "Nature 625, 1-10 (2026)") == "Nature 625, 1-10 (2026)"
    assert venue("Accepted at ICML 2025", "Nature 625 (2026)") == "ICML 2025"


def test_long_author_lists_keep_max_authors_and_count_the_rest(desk: Desk, make_config: Callable[..., Path]) -> None:
    """28 authors: the first 5 written, et_al = 23; with max_authors = 3, et_al = 25; 4 authors: none (1 with 3)."""
    olympiad = record(OLYMPIAD)
    fields = draft(olympiad, OLYMPIAD, desk.loaded()).fields
    assert fields["authors"] == ["Yafu Li", "Runzhe Zhan", "Haoran Zhang", "Shunkai Zhang", "Xiaoye Qu"]
    assert fields["et_al"] == 23
    three = load_config(make_config("[arxiv]\nmax_authors = 3\n", name="three.toml"))
    assert draft(olympiad, OLYMPIAD, three).fields["et_al"] == 25
    assert "et_al" not in draft(record(MEMPRIVACY), MEMPRIVACY, desk.loaded()).fields
    assert draft(record(MEMPRIVACY), MEMPRIVACY, three).fields["et_al"] == 1


@pytest.mark.parametrize(("text", "expected"), [
    ("Weights and code are released at https://github.com/PRIME-RL/SU-01.", "https://github.com/PRIME-RL/SU-01"),
    ("Code: github.com/owner/repo.git", "https://github.com/owner/repo"),
    (r"See \url{https://github.com/a-b/c_d.e/tree/main}", "https://github.com/a-b/c_d.e"),
    ("https://www.github.com/o/r?tab=readme", "https://github.com/o/r"),
    ("Code at https://gitlab.com/owner/repo", None),
    ("https://github.com/orgs/some-org", None),
    ("no code", None),
])
def test_the_first_github_repository_is_the_code_link(text: str, expected: str | None) -> None:
    """github.com/<owner>/<repo> anywhere in abstract or comments, rebuilt as https://github.com/<owner>/<repo>."""
    assert code_link(text) == expected


def test_areas_come_from_categories_and_keywords_in_configured_order(desk: Desk) -> None:
    """cs.CV + cs.CL → LLM, Vision (configured order); cs.LG with "reinforcement learning" and "agentic" → RL,
    Agents; an area the config does not have is never suggested."""
    config = desk.loaded()
    assert draft(record(SENSENOVA), SENSENOVA, config).fields["areas"] == ["LLM", "Vision"]
    assert draft(record(SDAR), SDAR, config).fields["areas"] == ["LLM", "RL", "Agents"]
    config.arxiv.areas["cs.CV"] = "Robotics"
    assert draft(record(CAUSAL), CAUSAL, config).fields["areas"] == ["LLM"]  # nothing left: the first, to check


# --- the live preview's form ---------------------------------------------------------------------------------------


def test_the_live_page_adds_papers_with_its_token_and_refuses_without(desk: Desk) -> None:
    """POST /arxiv with the page's token adds the paper to the watched file; without it, 403 and nothing written."""
    config = desk.loaded()
    config.arxiv.min_interval_seconds = 0  # two real requests here: the spacing has its own test, without waiting
    live = LivePreview(config, desk.issue, lambda: None)  # type: ignore[arg-type,return-value]
    page = TestClient(create_live_app(live), base_url="http://127.0.0.1")
    assert 'name="ids"' in page.get("/").text
    before = desk.issue.read_bytes()
    refused = page.post("/arxiv", data={"token": "guess", "ids": SDAR})
    assert refused.status_code == 403 and desk.issue.read_bytes() == before
    answer = page.post("/arxiv", data={"token": live.token, "ids": f"{SDAR}, {CAUSAL}"}).json()
    assert answer["ok"] and answer["message"].count("added ") == 2
    assert [p["arxiv"] for p in papers(desk.issue)][-2:] == [SDAR, CAUSAL]
    again = page.post("/arxiv", data={"token": live.token, "ids": "2605.99999"}).json()
    assert not again["ok"] and "2605.99999: arXiv has no such paper" in again["message"]


@pytest.mark.browser
def test_the_live_pages_form_adds_papers_and_the_page_rerenders_by_itself(desk: Desk, browser: object) -> None:
    """Typing two ids into "Add papers by arXiv id" writes them to the file, says so on the page, and the open page
    shows the new paper in the email without a reload."""
    expect = pytest.importorskip("playwright.sync_api").expect
    live = LivePreview(desk.loaded(), desk.issue, lambda: None)  # type: ignore[arg-type,return-value]
    server = LiveServer(live, free_port(), log_level="warning")
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    page = browser.new_page()  # type: ignore[attr-defined]
    try:
        deadline = time.monotonic() + 10
        while not server.started and time.monotonic() < deadline:
            time.sleep(0.02)
        page.goto(f"http://127.0.0.1:{server.config.port}/")
        expect(page.locator("#status")).to_contain_text("rendered #1", timeout=5000)
        page.evaluate("window.notReloaded = true")
        page.fill("#arxiv input[name=ids]", f"{SDAR} {CAUSAL}")
        page.click("#arxiv button[type=submit]")
        expect(page.locator("#arxiv-result")).to_contain_text(f"added {CAUSAL}", timeout=5000)
        expect(page.frame_locator("#html").locator("body")).to_contain_text(
            "Self-Distilled Agentic Reinforcement Learning", timeout=5000)
        assert page.evaluate("window.notReloaded") is True and len(desk.server.requests) == 1
    finally:
        page.close()
        server.should_exit = True
        thread.join(10)


def test_a_file_with_windows_line_endings_keeps_them(desk: Desk, runner: CliRunner) -> None:
    """An issue saved with CRLF gets its new papers with CRLF too, after its own bytes unchanged."""
    desk.issue.write_bytes(desk.issue.read_bytes().replace(b"\n", b"\r\n"))
    before = desk.issue.read_bytes()
    invoke(runner, desk.config, "issue", "add", ISSUE, SENSENOVA)
    after = desk.issue.read_bytes()
    assert after.startswith(before) and b"\n" not in after.replace(b"\r\n", b"")
    assert papers(desk.issue)[-1]["areas"] == ["LLM", "Vision"]


def test_a_save_made_while_arxiv_answers_is_kept(desk: Desk) -> None:
    """The editor saves the file while the request is out: the papers go after that save, which is not lost."""
    arxiv = client(desk, Clock())
    real_fetch = arxiv.fetch

    def fetch_while_editing(ids: list[str]) -> dict[str, object]:
        desk.issue.write_text(desk.issue.read_text(encoding="utf-8").replace(
            "title = \"Top-conf Paper Digest\"", "title = \"Saved meanwhile\"", 1), encoding="utf-8")
        return real_fetch(ids)  # type: ignore[return-value]

    arxiv.fetch = fetch_while_editing  # type: ignore[method-assign,assignment]
    add_papers(desk.issue, [SDAR], desk.loaded(), arxiv)
    data = tomllib.loads(desk.issue.read_text(encoding="utf-8"))
    assert data["title"] == "Saved meanwhile" and data["papers"][-1]["arxiv"] == SDAR
