"""The project's rendering against the reference MJML compiler (npm ``mjml`` 4), pixel by pixel.

mjml-python is not the reference: it ignores some of MJML (``<mj-attributes><mj-body …>``), and
premailer after it drops CSS that only mail clients use. The reference compiler's HTML of the same
MJML source (``newsletter preview --mjml``) is what the email should look like; tests/install-mjml.sh
installs it into build/node/.
"""

from __future__ import annotations

import io
import shutil
import subprocess
from pathlib import Path

import pytest
from PIL import Image, ImageChops

from .conftest import REPO, invoke, need

REFERENCE = REPO / "build" / "node" / "node_modules" / ".bin" / "mjml"
MAX_DIFFERING = 0.005  # of the pixels, at each width
WIDTHS = (800, 375)


def differing(a: Image.Image, b: Image.Image) -> float:
    """The fraction of pixels that differ; a page taller than the other differs by its extra rows."""
    size = (max(a.width, b.width), max(a.height, b.height))
    canvases = []
    for img in (a, b):
        canvas = Image.new("RGB", size, (255, 0, 255))  # a colour no email uses
        canvas.paste(img.convert("RGB"))
        canvases.append(canvas)
    mask = ImageChops.difference(*canvases).convert("L").point(lambda v: 255 if v else 0)
    return mask.histogram()[255] / (size[0] * size[1])


@pytest.fixture(scope="module")
def reference_compiler() -> Path:
    if not shutil.which("node"):
        need("node is not installed: the reference MJML compiler (npm mjml 4) runs on it")
    if not REFERENCE.exists():
        need(f"the reference MJML compiler is not at {REFERENCE}: bash tests/install-mjml.sh (needs npm)")
    return REFERENCE


def test_differing_counts_changed_and_extra_pixels():
    """The pixel diff is 0 for identical images and counts a changed area and extra height."""
    white = Image.new("RGB", (100, 100), "white")
    grey = white.copy()
    grey.paste((242, 243, 245), (0, 0, 100, 10))
    assert differing(white, white.copy()) == 0
    assert differing(white, grey) == pytest.approx(0.10)
    assert differing(white, Image.new("RGB", (100, 200), "white")) == pytest.approx(0.5)


def test_preview_mjml_is_the_source_of_the_html(make_config, runner, tmp_path):
    """preview --mjml writes each group's MJML beside its HTML, and compiling it gives that very HTML."""
    from newsletter.config import load_config
    from newsletter.render import Renderer

    config = make_config()
    out = tmp_path / "p"
    invoke(runner, config, "preview", "latest", "--areas", "RL", "--out", str(out), "--mjml")
    source = (out / "rl.mjml").read_text(encoding="utf-8")
    assert source.startswith("<mjml") and "PREVIEW" in source  # slots filled like the HTML's
    assert Renderer(load_config(config))._compile(source) == (out / "rl.html").read_text(encoding="utf-8")
    invoke(runner, config, "preview", "latest", "--areas", "RL", "--out", str(tmp_path / "q"))
    assert not list((tmp_path / "q").glob("*.mjml"))


def test_page_background_width_and_client_rules_reach_the_html(rendered_latest):
    """The grey page, the 640 px column, dark-mode and Outlook rules survive mjml-python and premailer."""
    html = rendered_latest
    assert "background-color:#f2f3f5" in html.replace(" ", "")
    assert "max-width:640px" in html.replace(" ", "")
    assert "@media (prefers-color-scheme: dark)" in html
    assert "[data-ogsc] .nl-text div" in html
    assert "#outlook a" in html


@pytest.fixture
def rendered_latest(repo_config) -> str:
    from newsletter.content import find_issue, load_issue
    from newsletter.render import Renderer

    issue = load_issue(find_issue(repo_config.path("issues"), "latest"), tuple(repo_config.newsletter.areas))
    group = Renderer(repo_config).render(issue, ("LLM",))
    assert group is not None
    return group.html


@pytest.mark.browser
def test_every_group_looks_like_the_reference_compilers_html(browser, reference_compiler, make_config, runner,
                                                             tmp_path):
    """Every group of the latest issue: < 0.5 % of pixels differ from npm mjml's HTML at 800 and 375 px."""
    out, ref = tmp_path / "ours", tmp_path / "reference"
    invoke(runner, make_config(), "preview", "latest", "--out", str(out), "--mjml")
    sources = sorted(out.glob("*.mjml"))
    assert len(sources) == 15
    ref.mkdir()
    done = subprocess.run([str(reference_compiler), *map(str, sources), "-o", f"{ref}/"],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    found = {}
    for width in WIDTHS:
        page = browser.new_page(viewport={"width": width, "height": 800})
        for source in sources:
            shots = []
            for path in (out / f"{source.stem}.html", ref / f"{source.stem}.html"):
                page.goto(path.as_uri())
                shots.append(Image.open(io.BytesIO(page.screenshot(full_page=True))))
            found[f"{source.stem}@{width}"] = differing(*shots)
        page.close()
    worst = {k: f"{v:.2%}" for k, v in found.items() if v >= MAX_DIFFERING}
    assert not worst, f"differ from the reference compiler's HTML: {worst}"
