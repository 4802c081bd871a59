"""The gallery in a real headless Chromium (Debian's `chromium`, driven by Playwright):
type a query, apply a filter, upload an image, see the right results. Saves screenshots."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from typer.testing import CliRunner

from indexer.cli import app as indexer_app
from tests.conftest import _free_port, garment_image
from tests.fake_gemini import FakeGemini

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
pytest.importorskip("playwright.sync_api")
if not Path(CHROMIUM).exists():
    pytest.skip(
        "Debian's chromium is not installed (apt-get install chromium)", allow_module_level=True
    )

from playwright.sync_api import Page, expect, sync_playwright  # noqa: E402

ANSWERS = {
    "red": {
        "keywords": {"garment": ["dress"], "season": ["summer"], "color": ["red"]},
        "caption": "A red summer dress.",
    },
    "yellow": {
        "keywords": {"garment": ["dress"], "season": ["spring"], "color": ["yellow"]},
        "caption": "A yellow spring dress.",
    },
    "blue": {
        "keywords": {"garment": ["jeans"], "season": ["fall"], "color": ["blue"]},
        "caption": "Blue denim jeans.",
    },
    "black": {
        "keywords": {"garment": ["coat"], "season": ["winter"], "color": ["black"]},
        "caption": "A black wool winter coat.",
    },
}


@pytest.fixture
def photos(fake: FakeGemini, env: dict[str, str], tmp_path: Path) -> Path:
    fake.by_color.update(ANSWERS)
    folder = tmp_path / "photos"
    for color in ANSWERS:
        garment_image(folder / f"{color}.jpg", color)
    assert CliRunner().invoke(indexer_app, ["run", str(folder)]).exit_code == 0
    return folder


@contextmanager
def serving(tmp_path: Path, *options: str) -> Iterator[str]:
    """`query serve OPTIONS` as a process on a free port; yields its URL."""
    port = _free_port()
    log = (tmp_path / "serve.log").open("wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "query", "serve", "--port", str(port), *options],
        stdout=log,
        stderr=subprocess.STDOUT,
        env=os.environ.copy(),
    )
    url = f"http://127.0.0.1:{port}/"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                urllib.request.urlopen(url + "openapi.json", timeout=1)
                break
            except urllib.error.HTTPError:
                break  # answering, with a token required
            except OSError:
                assert proc.poll() is None, (tmp_path / "serve.log").read_text()
                assert time.monotonic() < deadline, "query serve did not start"
                time.sleep(0.2)
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=20)
        log.close()


@pytest.fixture
def gallery(photos: Path, tmp_path: Path) -> Iterator[str]:
    with serving(tmp_path) as url:
        yield url


def _watch_console(page: Page) -> list[str]:
    """Collect what the browser reports, Content-Security-Policy violations included."""
    problems: list[str] = []
    page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: problems.append(str(e)))
    return problems


def test_search_filter_and_upload_in_a_real_browser(gallery: str, tmp_path: Path) -> None:
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1200, "height": 900})
        problems = _watch_console(page)
        page.goto(gallery)

        page.fill("#q", "a dress")
        page.press("#q", "Enter")
        cards = page.locator(".card")
        expect(cards).to_have_count(4)
        expect(cards.first.locator(".caption")).to_contain_text("dress")
        expect(cards.first.locator("img")).to_have_js_property("complete", True)

        page.click('.chip[data-facet="season"][data-keyword="summer"]')
        expect(cards).to_have_count(1)
        expect(cards.first.locator(".caption")).to_have_text("A red summer dress.")
        page.screenshot(path=str(tmp_path / "gallery-filtered.png"), full_page=True)

        page.click('.chip[data-facet="season"][data-keyword="summer"]')  # filter off again
        expect(cards).to_have_count(4)
        example = garment_image(tmp_path / "example.png", "blue", size=(300, 300))
        page.set_input_files("#upload", str(example))
        expect(page.locator("#status")).to_have_text("4 results")
        expect(cards.first.locator(".caption")).to_have_text("Blue denim jeans.")
        thumbnail = cards.first.locator("img")
        expect(thumbnail).to_have_js_property("complete", True)
        assert thumbnail.evaluate("img => img.naturalWidth") > 0  # a real picture arrived

        cards.first.click()
        expect(page.locator("#detail")).to_be_visible()
        expect(page.locator("#record")).to_contain_text('"jeans"')
        page.screenshot(path=str(tmp_path / "gallery.png"), full_page=True)
        browser.close()
    assert problems == []  # the page's own script and style run under its policy
    assert (tmp_path / "gallery.png").stat().st_size > 10_000
    print(f"screenshots: {tmp_path / 'gallery.png'}, {tmp_path / 'gallery-filtered.png'}")


def test_a_token_in_the_address_is_swapped_for_a_cookie(photos: Path, tmp_path: Path) -> None:
    with serving(tmp_path, "--token", "s3cret") as url, sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        page = browser.new_page()
        problems = _watch_console(page)
        page.goto(url + "?token=s3cret")
        expect(page.locator(".chip").first).to_be_visible()  # the API answered the cookie
        assert "token" not in page.url
        page.reload()  # the cookie alone keeps the page working
        expect(page.locator(".chip").first).to_be_visible()
        browser.close()
    assert problems == []
