"""The gallery in a real headless Chromium (Debian's `chromium`, driven by Playwright):
type a query, apply a filter, upload an image, see the right results. Saves screenshots."""

from __future__ import annotations

import re
import shutil
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from typer.testing import CliRunner

from indexer.cli import app as indexer_app
from tests.conftest import garment_image, query_serve
from tests.fake_gemini import FakeGemini

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
pytest.importorskip("playwright.sync_api")
if not Path(CHROMIUM).exists():
    pytest.skip(
        "Debian's chromium is not installed (apt-get install chromium)", allow_module_level=True
    )

from playwright.sync_api import Page, expect, sync_playwright  # noqa: E402

# Assertions wait for the page; how long a first search takes (the server loading its
# models) depends on the machine and its load, so the bound is far above any real wait.
expect.set_options(timeout=120_000)

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
    """`query serve OPTIONS` as a process on a free port; yields the page's URL."""
    with query_serve(tmp_path / "serve.log", *options) as base:
        yield base + "/"


@pytest.fixture
def gallery(photos: Path, tmp_path: Path) -> Iterator[str]:
    with serving(tmp_path) as url:
        yield url


@contextmanager
def browsing(width: int = 1200, height: int = 900) -> Iterator[tuple[Page, list[str]]]:
    """A page in headless Chromium, and what its console reports (see _watch_console)."""
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": width, "height": height})
        page.set_default_timeout(120_000)
        try:
            yield page, _watch_console(page)
        finally:
            browser.close()


def _watch_console(page: Page) -> list[str]:
    """Collect what the browser reports, Content-Security-Policy violations included."""
    problems: list[str] = []
    page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: problems.append(str(e)))
    return problems


def test_the_gallery_opens_on_the_collection_and_chips_filter_it(
    gallery: str, tmp_path: Path
) -> None:
    """No empty page; chips work without a query; counts and greyed keywords;
    the filters live in the address, so reload, back and a shared link work."""
    with browsing() as (page, problems):
        page.goto(gallery)
        cards = page.locator(".card")
        expect(cards).to_have_count(4)  # the collection, before any query
        expect(page.locator("#status")).to_have_text("4 images, newest first")
        expect(cards.first.locator("img")).to_have_js_property("complete", True)
        summer = page.locator('.chip[data-facet="season"][data-keyword="summer"]')
        expect(summer.locator(".n")).to_have_text("1")
        white = page.locator('.chip[data-facet="color"][data-keyword="white"]')
        expect(white).to_be_hidden()  # no image of the collection has it: it filters nothing
        page.screenshot(path=str(tmp_path / "gallery-landing.png"), full_page=True)

        summer.click()  # a chip without a query filters the collection
        expect(cards).to_have_count(1)
        expect(cards.first.locator(".caption")).to_have_text("A red summer dress.")
        assert page.url.endswith("/?where=season=summer")
        jeans = page.locator('.chip[data-facet="garment"][data-keyword="jeans"]')
        expect(jeans).to_have_class(re.compile(r"\bnone\b"))  # greyed: none of these has it
        expect(jeans.locator(".n")).to_have_text("0")
        page.reload()
        expect(cards).to_have_count(1)
        expect(summer).to_have_attribute("aria-pressed", "true")
        page.go_back()
        expect(cards).to_have_count(4)
        expect(summer).to_have_attribute("aria-pressed", "false")

        # A shared link with a query and a filter, spelt as a person would type it.
        page.goto(gallery + "?q=a%20dress&where=Color=Yellow")
        expect(page.locator("#q")).to_have_value("a dress")
        expect(cards).to_have_count(1)
        expect(cards.first.locator(".caption")).to_have_text("A yellow spring dress.")
        expect(page.locator('.chip[data-facet="color"][data-keyword="yellow"]')).to_have_attribute(
            "aria-pressed", "true"
        )
    assert problems == []  # the page's own script and style run under its policy


def test_search_by_keyboard_and_a_readable_record_card(gallery: str, tmp_path: Path) -> None:
    with browsing() as (page, problems):
        page.goto(gallery)
        cards = page.locator(".card")
        expect(cards).to_have_count(4)
        expect(page.locator("#q")).to_be_focused()
        page.keyboard.type("a black coat")
        page.keyboard.press("Enter")
        expect(page.locator("#status")).to_have_text("4 best matches")
        expect(cards.first.locator(".caption")).to_have_text("A black wool winter coat.")
        assert page.url.endswith("/?q=a%20black%20coat")
        cards.first.focus()
        page.keyboard.press("Enter")  # a focused card opens with the keyboard
        detail = page.locator("#detail")
        expect(detail).to_be_visible()
        expect(page.locator("#detail-caption")).to_have_text("A black wool winter coat.")
        fields = page.locator("#detail-fields")
        expect(fields.locator("dt")).to_contain_text(["garment", "season", "color", "path"])
        expect(fields).to_contain_text("coat")
        expect(fields).to_contain_text("black.jpg")
        expect(fields).to_contain_text("gemini")
        assert "{" not in fields.inner_text()  # a card, not raw JSON
        expect(page.locator("#full")).to_have_js_property("complete", True)
        page.screenshot(path=str(tmp_path / "gallery-card.png"), full_page=True)
        page.keyboard.press("Escape")
        expect(detail).not_to_be_visible()
    assert problems == []


def test_an_uploaded_photo_is_shown_beside_its_results(gallery: str, tmp_path: Path) -> None:
    with browsing() as (page, problems):
        page.goto(gallery)
        cards = page.locator(".card")
        expect(cards).to_have_count(4)
        example = garment_image(tmp_path / "example.png", "blue", size=(300, 300))
        page.set_input_files("#upload", str(example))
        preview = page.locator("#query-photo")
        expect(preview).to_be_visible()
        expect(preview).to_have_js_property("complete", True)
        assert preview.evaluate("img => img.naturalWidth") == 300  # the photo itself
        expect(page.locator("#query-name")).to_have_text("example.png")
        expect(page.locator("#status")).to_have_text("4 best matches")
        expect(cards.first.locator(".caption")).to_have_text("Blue denim jeans.")
        thumbnail = cards.first.locator("img")
        expect(thumbnail).to_have_js_property("complete", True)
        assert thumbnail.evaluate("img => img.naturalWidth") > 0  # a real picture arrived
        page.click('.chip[data-facet="season"][data-keyword="summer"]')  # filters the upload
        expect(cards).to_have_count(1)
        expect(preview).to_be_visible()
        page.screenshot(path=str(tmp_path / "gallery-upload.png"), full_page=True)
        page.click("#clear-image")
        expect(preview).not_to_be_visible()
        expect(page.locator("#status")).to_have_text("1 image, newest first")
    assert problems == []
    assert (tmp_path / "gallery-upload.png").stat().st_size > 10_000


def test_a_token_in_the_address_is_swapped_for_a_cookie(photos: Path, tmp_path: Path) -> None:
    with serving(tmp_path, "--token", "s3cret") as url, browsing() as (page, problems):
        page.goto(url + "?token=s3cret")
        expect(page.locator(".chip:not([hidden])").first).to_be_visible()  # the API answered
        assert "token" not in page.url
        page.reload()  # the cookie alone keeps the page working
        expect(page.locator(".chip:not([hidden])").first).to_be_visible()
    assert problems == []


def test_show_more_pages_through_a_larger_collection(photos: Path, tmp_path: Path) -> None:
    more = tmp_path / "more"
    for i in range(26):  # 30 images in all: more than one page of 24
        garment_image(
            more / f"{i:02d}.jpg", ["red", "blue", "yellow", "black"][i % 4], (200 + i, 260)
        )
    assert CliRunner().invoke(indexer_app, ["run", str(more)]).exit_code == 0
    with serving(tmp_path) as url, browsing() as (page, problems):
        page.goto(url)
        cards = page.locator(".card")
        expect(cards).to_have_count(24)
        expect(page.locator("#status")).to_have_text("30 images, newest first (showing 24)")
        page.click("#more")
        expect(cards).to_have_count(30)
        expect(page.locator("#status")).to_have_text("30 images, newest first")
        expect(page.locator("#more")).not_to_be_visible()
        ids = cards.evaluate_all("cards => cards.map(c => c.dataset.id)")
        assert len(set(ids)) == 30  # the second page neither repeats nor skips a record

        # A search pages the same way.
        page.fill("#q", "clothes")
        page.keyboard.press("Enter")
        expect(page.locator("#status")).to_have_text("24 best matches")
        page.click("#more")
        expect(page.locator("#status")).to_have_text("30 best matches")
        assert len(set(cards.evaluate_all("cards => cards.map(c => c.dataset.id)"))) == 30

        # Another process indexes meanwhile: browsing says so, and shows them on request.
        page.goto(url)
        expect(page.locator("#status")).to_have_text("30 images, newest first (showing 24)")
        newer = tmp_path / "newer"
        for i in range(2):
            garment_image(newer / f"n{i}.jpg", "red", (300 + i, 280))
        assert CliRunner().invoke(indexer_app, ["run", str(newer)]).exit_code == 0
        expect(page.locator("#newer")).to_be_hidden()
        page.evaluate("window.dispatchEvent(new Event('focus'))")  # the user comes back
        expect(page.locator("#newer")).to_be_visible()
        page.click("#show-newer")
        expect(page.locator("#status")).to_have_text("32 images, newest first (showing 24)")
        expect(page.locator("#newer")).to_be_hidden()
    assert problems == []


def test_on_a_phone_the_first_results_show_and_a_keyboard_skips_to_them(
    gallery: str, tmp_path: Path
) -> None:
    with browsing(width=390, height=844) as (page, problems):
        page.goto(gallery)
        cards = page.locator(".card")
        expect(cards).to_have_count(4)
        expect(page.locator("#facets")).to_be_hidden()  # the filters fold away
        top = cards.first.bounding_box()
        assert top is not None and top["y"] + 40 < 844  # in view without scrolling
        page.screenshot(path=str(tmp_path / "gallery-phone.png"))
        page.click("#filters summary")
        expect(page.locator('.chip[data-facet="season"][data-keyword="summer"]')).to_be_visible()
        targets = page.locator("button:visible, summary:visible, input:visible, a:visible")
        for target in targets.all():
            box = target.bounding_box()
            assert box is not None and box["width"] >= 24 and box["height"] >= 24, (
                target.evaluate("e => e.outerHTML.slice(0, 80)"),
                box,
            )
        page.focus("#q")
        page.keyboard.press("Tab")  # the search button
        page.keyboard.press("Tab")
        expect(page.locator("#skip")).to_be_focused()
        page.keyboard.press("Enter")
        expect(cards.first).to_be_focused()
    assert problems == []


def test_a_hostile_address_is_shown_as_text(gallery: str) -> None:
    """The address is anyone's link: its query and filters reach the page and the API as
    data. Markup stays text (no element, no script), and a bad filter is one error line."""
    bait = '<img src=x onerror="document.title=1">'
    with browsing() as (page, problems):
        page.goto(
            gallery + "?q=" + urllib.parse.quote(bait) + "&where=color=" + urllib.parse.quote(bait)
        )
        expect(page.locator("#status")).to_have_class("error")
        expect(page.locator("#status")).to_contain_text("is not a color keyword")
        expect(page.locator("#q")).to_have_value(bait)
        assert page.locator("img[src='x']").count() == 0
        assert page.title() == "Clothing search"
    # The one thing the browser reports is the refused search: no policy violation.
    assert problems == [
        "Failed to load resource: the server responded with a status of 400 (Bad Request)"
    ]


def test_a_chip_leaves_things_out_and_a_card_finds_more_like_it(
    gallery: str, tmp_path: Path
) -> None:
    """A second click turns a chip into an exclusion (kept in the address); "More like
    this" on a record card shows the others nearest it, itself left out."""
    with browsing() as (page, problems):
        page.goto(gallery)
        cards = page.locator(".card")
        expect(cards).to_have_count(4)
        dress = page.locator('.chip[data-facet="garment"][data-keyword="dress"]')
        dress.click()
        expect(cards).to_have_count(2)
        dress.click()  # now: no dresses
        expect(dress).to_have_attribute("aria-pressed", "mixed")
        expect(cards).to_have_count(2)
        captions = cards.locator(".caption")
        expect(captions).to_have_text(["A black wool winter coat.", "Blue denim jeans."])
        assert page.url.endswith("/?exclude=garment=dress")
        page.reload()
        expect(cards).to_have_count(2)
        expect(dress).to_have_attribute("aria-pressed", "mixed")
        dress.click()  # cleared
        expect(cards).to_have_count(4)

        page.locator(".card", has_text="A red summer dress.").click()
        page.locator("#like-this").click()
        expect(page.locator("#query-image")).to_be_visible()
        expect(cards).to_have_count(3)  # the others, not itself
        expect(cards.locator(".caption")).not_to_contain_text(["A red summer dress."])
        expect(cards.first.locator(".caption")).to_have_text("A yellow spring dress.")
        assert re.search(r"[?&]like=[0-9a-f]{32}", page.url)
        page.screenshot(path=str(tmp_path / "gallery-more-like-this.png"), full_page=True)
        page.reload()  # a shared link to "more like this" shows the same
        expect(cards).to_have_count(3)
        page.locator("#clear-image").click()
        expect(cards).to_have_count(4)
        assert "like=" not in page.url
    assert problems == []


def test_the_duplicates_view_lists_copies_and_a_dismissed_pair_goes(
    photos: Path, tmp_path: Path
) -> None:
    import shutil

    from PIL import Image

    shutil.copyfile(photos / "red.jpg", photos / "copy-of-red.jpg")
    Image.open(photos / "red.jpg").resize((160, 200)).save(photos / "red-small.jpg")
    assert CliRunner().invoke(indexer_app, ["run", str(photos)]).exit_code == 0
    with serving(tmp_path) as url, browsing() as (page, problems):
        page.goto(url)
        expect(page.locator(".card")).to_have_count(5)  # the copy is not a record of its own
        page.locator("#show-duplicates").click()
        groups = page.locator(".group")
        expect(groups).to_have_count(2)
        expect(groups.locator("h3")).to_have_text(["exact copies (2)", "near copies (2)"])
        expect(groups.first.locator(".keep")).to_have_count(1)
        assert page.url.endswith("/?view=duplicates")
        page.screenshot(path=str(tmp_path / "gallery-duplicates.png"), full_page=True)
        groups.nth(1).get_by_role("button", name="Not a duplicate").click()
        expect(groups).to_have_count(1)
        page.reload()
        expect(groups).to_have_count(1)  # dismissed for good
    assert problems == []
