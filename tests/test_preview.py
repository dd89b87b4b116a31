"""`newsletter preview` and `newsletter demo` for editors: files on disk, no database, no SMTP."""

from __future__ import annotations

from newsletter.cli import cli


def test_preview_writes_every_group_and_an_index(make_config, runner, tmp_path):
    """preview ISSUE writes HTML and text for each group that meets a paper, plus index.html."""
    config = make_config()
    result = runner.invoke(cli, ["--config", str(config), "preview", "2026-05-28", "--out", str(tmp_path / "p")])
    assert result.exit_code == 0, result.output
    assert str(tmp_path / "p" / "index.html") in result.output
    htmls = sorted(p.stem for p in (tmp_path / "p").glob("*.html") if p.stem != "index")
    assert len(htmls) == 15 and "all" in htmls and "llm-rl" in htmls
    index = (tmp_path / "p" / "index.html").read_text()
    assert all(f'href="{key}.html"' in index and f'href="{key}.txt"' in index for key in htmls)
    assert not (tmp_path / "newsletter.db").exists()


def test_preview_one_group(make_config, runner, tmp_path):
    """--areas limits the preview to that group."""
    config = make_config()
    result = runner.invoke(cli, ["--config", str(config), "preview", "latest", "--areas", "rl, llm",
                                 "--out", str(tmp_path / "p")])
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in (tmp_path / "p").iterdir()) == ["index.html", "llm-rl.html", "llm-rl.txt"]


def test_preview_bad_area_and_unknown_issue(make_config, runner):
    """An unknown area or issue is a one-line error naming it."""
    config = make_config()
    bad_area = runner.invoke(cli, ["--config", str(config), "preview", "latest", "--areas", "NLP"])
    assert bad_area.exit_code == 2 and "unknown area 'NLP'" in bad_area.output
    bad_issue = runner.invoke(cli, ["--config", str(config), "preview", "1999-01-01"])
    assert bad_issue.exit_code == 1 and "no issue '1999-01-01'" in bad_issue.output
    assert "Traceback" not in bad_issue.output


def test_preview_default_folder_is_per_issue(make_config, runner, tmp_path):
    """Without --out the preview goes to [paths] preview / <issue>."""
    config = make_config()
    result = runner.invoke(cli, ["--config", str(config), "preview"])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "preview" / "2026-05-28" / "index.html").exists()
