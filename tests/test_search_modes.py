"""Searching the way shoppers ask, through the real CLI: more like an indexed image, a picture
changed by words, keywords left out, a score floor. Against the fake Gemini server (which
embeds a picture with words as one content, a colour named in the words replacing the
picture's own) and with the offline provider on real photos."""

from __future__ import annotations

import json
import os
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from indexer.images import content_id
from tests.conftest import Ran, garment_image, in_process
from tests.fake_gemini import FakeGemini

CATALOG = {
    "red": {"keywords": {"garment": ["dress"], "color": ["red"]}, "caption": "A red dress."},
    "blue": {"keywords": {"garment": ["dress"], "color": ["blue"]}, "caption": "A blue dress."},
    "violet": {"keywords": {"garment": ["dress"], "color": ["violet"]}, "caption": "A dress."},
    "black": {"keywords": {"garment": ["dress"], "color": ["black"]}, "caption": "A dress."},
    "green": {"keywords": {"garment": ["jeans"], "color": ["green"]}, "caption": "Jeans."},
    "yellow": {"keywords": {"garment": ["jeans"], "color": ["yellow"]}, "caption": "Jeans."},
    "orange": {"keywords": {"garment": ["hat"], "color": ["orange"]}, "caption": "A hat."},
    "white": {"keywords": {"garment": ["hat"], "color": ["white"]}, "caption": "A hat."},
}
DRESSES = {"red.jpg", "blue.jpg", "violet.jpg", "black.jpg"}


def query(*args: str) -> Ran:
    return in_process("query", *args)


def hits(*args: str) -> list[dict[str, Any]]:
    done = query(*args, "--json")
    assert done.returncode == 0, done.stderr
    found = json.loads(done.stdout)
    assert isinstance(found, list)
    return found


def names(found: list[dict[str, Any]]) -> list[str]:
    return [Path(h["path"]).name for h in found]


@pytest.fixture
def catalog(env: dict[str, str], fake: FakeGemini, tmp_path: Path) -> Path:
    fake.by_color.update(CATALOG)
    folder = tmp_path / "photos"
    for color in CATALOG:
        garment_image(folder / f"{color}.jpg", color)
    done = in_process("indexer", "run", str(folder))
    assert done.returncode == 0, done.stderr
    return folder


def test_more_like_an_indexed_image_calls_no_model_and_leaves_it_out(
    catalog: Path, fake: FakeGemini
) -> None:
    asked = len(fake.requests)
    by_path = hits("similar", str(catalog / "red.jpg"), "-n", "3")
    assert set(names(by_path)) == DRESSES - {"red.jpg"}  # the other dresses, not itself
    red_id = content_id((catalog / "red.jpg").read_bytes())
    assert hits("similar", red_id, "-n", "3") == by_path  # by record id, the same
    assert len(fake.requests) == asked  # no request of any kind reached the API
    # A path as a person types it: relative, through "..", is the indexed file.
    relative = os.path.relpath(catalog / "sub" / ".." / "red.jpg")
    assert hits("similar", relative, "-n", "3") == by_path
    missing = query("similar", str(catalog / "nowhere.jpg"))
    assert missing.returncode == 2 and "no such record" in missing.stderr


def test_words_change_the_picture_in_one_content(
    catalog: Path, fake: FakeGemini, tmp_path: Path
) -> None:
    probe = garment_image(tmp_path / "probe.png", "blue", size=(300, 300))  # a blue dress
    assert names(hits("image", str(probe), "-n", "1")) == ["blue.jpg"]
    generated, asked = fake.count("generateContent"), len(fake.requests)
    in_red = hits("image", str(probe), "--text", "in red", "-n", "4")
    assert names(in_red)[0] == "red.jpg" and set(names(in_red)) == DRESSES  # still dresses
    assert fake.count("generateContent") == generated  # nothing described
    sent = fake.requests[asked:]
    assert len(sent) == 1  # one embedding request: the picture and the words as one content
    parts = [p for r in sent[0].body.get("requests", [sent[0].body]) for p in r["content"]["parts"]]
    assert sorted("text" in p for p in parts) == [False, True]

    # The same for an indexed image: its file, with the words.
    like_blue = hits("similar", str(catalog / "blue.jpg"), "--text", "in red", "-n", "3")
    assert names(like_blue)[0] == "red.jpg" and "blue.jpg" not in names(like_blue)


def test_excluded_keywords_never_come_back(catalog: Path) -> None:
    everything = names(hits("text", "dress", "-n", "8"))
    assert "black.jpg" in everything
    for found in (
        hits("text", "dress", "--exclude", "color=black", "-n", "8"),
        hits("similar", str(catalog / "red.jpg"), "-x", "color=black", "-n", "8"),
        hits("text", "dress", "-w", "garment=dress", "-x", "color=black", "-x", "color=blue"),
    ):
        assert found and all("black" not in h["keywords"].get("color", []) for h in found)
    assert set(names(hits("text", "dress", "-w", "garment=dress", "-x", "color=black"))) == (
        DRESSES - {"black.jpg"}
    )
    typo = query("text", "dress", "--exclude", "colour=black")
    assert typo.returncode == 2 and "did you mean 'color'?" in typo.stderr
    both = query("text", "dress", "-w", "color=black", "-x", "color=black")
    assert both.returncode == 2 and "both required and excluded" in both.stderr


def test_a_score_floor_holds(catalog: Path) -> None:
    ranked = hits("text", "red dress", "-n", "8")
    scores = sorted({h["score"] for h in ranked}, reverse=True)
    assert len(scores) >= 3
    floor = (scores[1] + scores[2]) / 2
    kept = hits("text", "red dress", "-n", "8", "--min-score", str(floor))
    assert kept == [h for h in ranked if h["score"] >= floor] and len(kept) < len(ranked)
    assert hits("similar", str(catalog / "red.jpg"), "--min-score", "1.01") == []
    shown = query("text", "red dress", "--min-score", "1.01")
    assert shown.returncode == 0 and "no matching images" in shown.stdout


def test_the_api_serves_similar_exclusions_and_floors(catalog: Path, tmp_path: Path) -> None:
    from fastapi.testclient import TestClient

    from query.client import QueryClient
    from query.server import create_app

    api = TestClient(
        create_app(QueryClient.from_env(), tmp_path / "thumbs"), base_url="http://127.0.0.1"
    )
    red_id = content_id((catalog / "red.jpg").read_bytes())
    alike = api.get(f"/api/similar/{red_id}", params={"limit": 8, "exclude": "color=black"})
    assert alike.status_code == 200, alike.text
    assert set(names(alike.json())) == {f"{c}.jpg" for c in CATALOG} - {"red.jpg", "black.jpg"}
    floor = alike.json()[2]["score"]
    cut = api.get(f"/api/similar/{red_id}", params={"min_score": floor}).json()
    assert cut and all(h["score"] >= floor for h in cut)
    assert api.get(f"/api/similar/{'0' * 32}").status_code == 404
    assert api.get("/api/similar/..%2Fetc").status_code == 404
    browsed = api.get("/api/images", params={"exclude": ["color=black", "garment=hat"]}).json()
    assert browsed["total"] == 5 and "black" not in browsed["counts"].get("color", {})
    searched = api.get("/api/search", params={"q": "dress", "exclude": "color=black"}).json()
    assert searched and "black.jpg" not in names(searched)
    bad = api.get("/api/search", params={"q": "dress", "exclude": "colour=black"})
    assert bad.status_code == 400 and "did you mean" in bad.json()["detail"]


def test_offline_more_like_this_and_words(
    dataset: Path, env: dict[str, str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    pytest.importorskip("torch")
    monkeypatch.delenv("GOOGLE_API_KEY")
    monkeypatch.setenv("GEMINI_BASE_URL", "http://127.0.0.1:9")  # nothing may be called
    photos = tmp_path / "photos"
    for cls in ("shoes", "dress", "pants", "hat"):
        (photos / cls).mkdir(parents=True)
        for src in sorted((dataset / "validation" / cls).glob("*.jpg"))[:8]:
            (photos / cls / src.name).symlink_to(src)
    done = in_process("indexer", "run", str(photos))
    assert done.returncode == 0, done.stderr
    example = sorted((photos / "shoes").iterdir())[0]
    alike = hits("similar", str(example), "-n", "5")
    assert example.name not in names(alike)
    assert sum(Path(h["path"]).parent.name == "shoes" for h in alike) >= 4

    # Words re-rank: a colour some shoes have and the example has not comes forward.
    colors = Counter(
        c
        for h in hits("text", "shoes", "-w", "garment=shoes", "-n", "30")
        for c in h["keywords"].get("color", [])
    )
    own = hits("similar", str(example), "-n", "1")[0]["keywords"].get("color", [])
    wanted = next(c for c, _ in colors.most_common() if c not in own)

    def first(found: list[dict[str, Any]]) -> int:
        """Where the first hit of the wanted colour is (past the end when none is)."""
        ranks = [i for i, h in enumerate(found) if wanted in h["keywords"].get("color", [])]
        return ranks[0] if ranks else len(found)

    plain = hits("similar", str(example), "-n", "10")
    moved = hits("similar", str(example), "--text", wanted, "-n", "10")
    assert first(moved) < first(plain)
    assert sum(Path(h["path"]).parent.name == "shoes" for h in moved[:5]) >= 3  # still shoes
    gone = hits("similar", str(example), "-x", f"color={wanted}", "-n", "10")
    assert gone and all(wanted not in h["keywords"].get("color", []) for h in gone)
