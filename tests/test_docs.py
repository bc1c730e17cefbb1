"""The docs site builds without a warning, and the README stays a short door into it.

`mkdocs build --strict` turns every warning into a failure; mkdocs.yml's `validation`
makes warnings of broken links, missing anchors and pages left out of the nav. A second
test breaks a copy of the site on purpose, so this check is known to bite.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parent.parent
README = REPO / "README.md"
MAX_README_LINES = 150


def build(root: Path, out: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--config-file",
                           str(root / "mkdocs.yml"), "--site-dir", str(out)],
                          cwd=root, capture_output=True, text=True, timeout=300)


def nav_pages(items: object) -> list[str]:
    """Every Markdown file the nav of mkdocs.yml names, in order."""
    if isinstance(items, str):
        return [items]
    if isinstance(items, list):
        return [page for item in items for page in nav_pages(item)]
    if isinstance(items, dict):
        return [page for value in items.values() for page in nav_pages(value)]
    return []


def site_config() -> dict:
    return yaml.safe_load((REPO / "mkdocs.yml").read_text())


def readme_links() -> list[str]:
    return re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", README.read_text())


def test_the_site_builds_strict_without_a_warning(tmp_path: Path) -> None:
    out = tmp_path / "site"
    done = build(REPO, out)
    log = done.stdout + done.stderr
    assert done.returncode == 0, log[-4000:]
    assert "WARNING" not in log, log[-4000:]
    pages = nav_pages(site_config()["nav"])
    assert len(pages) >= 15 and len(set(pages)) == len(pages), pages
    on_disk = sorted(p.relative_to(REPO / "docs").as_posix() for p in (REPO / "docs").rglob("*.md"))
    assert sorted(pages) == on_disk  # every page is in the nav, and the nav names no missing page
    for page in pages:
        html = out / ("index.html" if page == "index.md" else page.removesuffix(".md") + "/index.html")
        assert html.is_file(), html
    walkthrough = (out / "walkthrough-garage-door" / "index.html").read_text()
    assert "install-pi.sh" in walkthrough and "edgecam train" in walkthrough
    # An offline Pi can serve the site: no page loads a script or a stylesheet from elsewhere.
    for html in out.rglob("*.html"):
        text = html.read_text()
        assert not re.search(r"<(script|link)[^>]+(src|href)=\"https?://", text), html


def test_the_strict_build_fails_on_a_broken_link_an_anchor_and_an_orphan(tmp_path: Path) -> None:
    root = tmp_path / "copy"
    root.mkdir()
    shutil.copy(REPO / "mkdocs.yml", root / "mkdocs.yml")
    shutil.copytree(REPO / "docs", root / "docs")
    with (root / "docs" / "index.md").open("a") as page:
        page.write("\n[gone](no-such-page.md) and [no anchor](model.md#no-such-heading)\n")
    (root / "docs" / "orphan.md").write_text("# Not in the nav\n")
    done = build(root, tmp_path / "site")
    log = done.stdout + done.stderr
    assert done.returncode != 0, log[-3000:]
    assert "no-such-page.md" in log and "#no-such-heading" in log and "orphan.md" in log, log[-3000:]


def test_the_readme_is_short_and_links_into_the_site() -> None:
    lines = README.read_text().splitlines()
    assert len(lines) <= MAX_README_LINES, f"README.md has {len(lines)} lines; keep it <= {MAX_README_LINES}"
    links = readme_links()
    docs = [link for link in links if link.startswith("docs/")]
    for link in docs:
        assert (REPO / link).is_file(), f"README.md links to {link}, which does not exist"
    linked = {link.removeprefix("docs/") for link in docs}
    # The door into each part of the site: every page of the nav is one click from the README.
    missing = [page for page in nav_pages(site_config()["nav"]) if page not in linked]
    assert not missing, f"README.md does not link to {missing}"


def test_the_quick_start_page_opens_with_the_readmes_two_commands() -> None:
    def first_sh_block(path: Path) -> str:
        found = re.search(r"```sh\n(.*?)```", path.read_text(), re.S)
        assert found, path
        return found.group(1)

    assert first_sh_block(REPO / "docs" / "quickstart.md") == first_sh_block(README)
