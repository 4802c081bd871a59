"""`indexer duplicates` through the real CLI on real photos, with both providers: byte
copies listed with their original (and never taking its record over), near copies (smaller,
re-encoded, cropped, as PNG, brighter, marked) found by pixels, distinct photos left apart,
a dismissed pair gone for good, and removing one copy keeping the record."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest
from PIL import Image, ImageDraw, ImageEnhance

from tests.conftest import in_process

CHANGES = {
    "smaller.jpg": lambda img: img.resize((img.width // 2, img.height // 2)),
    "recompressed.jpg": lambda img: img,  # saved below at a low quality
    "cropped.jpg": lambda img: img.crop((8, 0, img.width, img.height - 6)),
    "as.png": lambda img: img,
    "brighter.jpg": lambda img: ImageEnhance.Brightness(img).enhance(1.12),
    "marked.jpg": lambda img: _marked(img),
}


def _marked(img: Image.Image) -> Image.Image:
    img = img.copy()
    ImageDraw.Draw(img).rectangle((4, 4, 40, 14), fill=(0, 0, 0))
    return img


def catalog(dataset: Path, root: Path) -> tuple[list[Path], dict[str, Path]]:
    """Distinct photos in root/shop, near copies of six of them in root/market, and a byte
    copy of one under another name in root/backup."""
    photos = []
    for cls in ("dress", "shoes", "pants", "hat", "shirt", "skirt"):
        for src in sorted((dataset / "validation" / cls).glob("*.jpg"))[:3]:
            target = root / "shop" / f"{cls}-{src.name}"
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(src, target)
            photos.append(target)
    copies = {}
    for n, (name, change) in enumerate(CHANGES.items()):
        original = photos[n * 3]
        target = root / "market" / name
        target.parent.mkdir(parents=True, exist_ok=True)
        changed = change(Image.open(original).convert("RGB"))
        changed.save(target, quality=45 if "recompressed" in name else 90)
        copies[name] = original
    (root / "backup").mkdir()
    shutil.copyfile(photos[1], root / "backup" / "same-bytes.jpg")
    return photos, copies


def duplicates(*args: str) -> list[dict[str, Any]]:
    done = in_process("indexer", "duplicates", "--json", *args)
    assert done.returncode == 0, done.stderr
    groups = json.loads(done.stdout)["groups"]
    assert isinstance(groups, list)
    return groups


def paths(group: dict[str, Any]) -> set[str]:
    return {Path(i["path"]).name for i in group["images"]}


@pytest.mark.parametrize("provider", ["gemini", "local"])
def test_exact_and_near_copies_are_found_and_a_dismissed_pair_stays_gone(
    provider: str,
    dataset: Path,
    env: dict[str, str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    if provider == "local":
        pytest.importorskip("torch")
        monkeypatch.delenv("GOOGLE_API_KEY")
    photos, copies = catalog(dataset, tmp_path)
    for folder in ("shop", "backup", "market", "shop"):  # the shop again: no flip-flop
        done = in_process("indexer", "run", str(tmp_path / folder))
        assert done.returncode in (0, 1), done.stderr

    groups = duplicates()
    exact = [g for g in groups if g["kind"] == "exact"]
    assert [paths(g) for g in exact] == [{photos[1].name, "same-bytes.jpg"}]
    assert len({i["id"] for i in exact[0]["images"]}) == 1  # one record, two paths
    near = [paths(g) for g in groups if g["kind"] == "near"]
    expected = [{name, copies[name].name} for name in CHANGES]
    assert sorted(map(sorted, near)) == sorted(map(sorted, expected))
    hit = json.loads(in_process("query", "similar", str(photos[0]), "--json", "-n", "30").stdout)
    held = next(h for h in hit if Path(h["path"]).name == photos[1].name)
    assert [Path(p).name for p in held["copies"]] == ["same-bytes.jpg"]  # the original's own

    done = in_process(
        "indexer", "duplicates", "--dismiss", str(tmp_path / "market" / "as.png"),
        str(copies["as.png"]),
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    again = [paths(g) for g in duplicates(*(["--kind", "near"]))]
    assert {"as.png", copies["as.png"].name} not in again and len(again) == len(CHANGES) - 1
    assert all(g["kind"] == "near" for g in duplicates("--kind", "near"))


def test_a_record_goes_only_with_its_last_path_and_a_real_move_is_a_move(
    env: dict[str, str], tmp_path: Path
) -> None:
    from indexer.config import load_settings
    from indexer.images import content_id
    from indexer.store import ImageStore
    from tests.conftest import garment_image

    original = garment_image(tmp_path / "shop" / "red.png", "red")
    copy = tmp_path / "backup" / "red.png"
    copy.parent.mkdir()
    shutil.copyfile(original, copy)
    for folder in ("shop", "backup"):
        assert in_process("indexer", "run", str(tmp_path / folder)).returncode == 0
    rid = content_id(original.read_bytes())

    def places() -> list[str]:
        with ImageStore.open(load_settings()) as store:
            return store.places([rid]).get(rid, [])

    assert places() == [str(original), str(copy)]
    settings = load_settings()
    with ImageStore.open(settings, exclusive=True) as store:
        original.unlink()  # as the watcher sees it: the original's file is gone
        assert store.remove_paths([str(original)]) == 0  # the record stays...
    assert places() == [str(copy)]  # ...with the copy as its own path
    moved = tmp_path / "elsewhere" / "red.png"
    moved.parent.mkdir()
    copy.rename(moved)
    assert in_process("indexer", "run", str(tmp_path / "elsewhere")).returncode == 0
    assert places() == [str(moved)]  # none of its paths held a file: a move
    with ImageStore.open(settings, exclusive=True) as store:
        moved.unlink()
        assert store.remove_paths([str(moved)]) == 1  # the last path: the record goes
    assert places() == []


def test_records_made_before_fingerprints_get_them_from_the_command(
    env: dict[str, str], tmp_path: Path
) -> None:
    """A collection built before fingerprints were (simulated by taking the key off its
    records, as Chroma stores them) is fingerprinted by `indexer duplicates`, each file read
    once, and its copies are then found; a file changed since is left out, not guessed."""
    import chromadb

    from indexer.config import load_settings
    from tests.conftest import garment_image

    red = garment_image(tmp_path / "photos" / "red.png", "red")
    Image.open(red).resize((160, 200)).save(tmp_path / "photos" / "red-small.png")
    changed = garment_image(tmp_path / "photos" / "blue.png", "blue")
    assert in_process("indexer", "run", str(tmp_path / "photos")).returncode == 0
    settings = load_settings()
    client = chromadb.PersistentClient(str(settings.store_path))
    records = client.get_collection(settings.collection)
    ids = records.get()["ids"]
    records.update(ids=ids, metadatas=[{"likeness": None}] * len(ids))
    garment_image(changed, "green")  # its bytes changed after indexing

    done = in_process("indexer", "duplicates", "--json")
    assert done.returncode == 0, done.stderr
    assert "fingerprinted 2 image(s)" in done.stderr and "1 unreadable or changed" in done.stderr
    groups = json.loads(done.stdout)["groups"]
    assert [paths(g) for g in groups] == [{"red.png", "red-small.png"}]
    again = in_process("indexer", "duplicates", "--json")
    assert "fingerprinted 0 image(s)" in again.stderr  # only the changed file is still missing
    variants = in_process("indexer", "duplicates", "--json", "--kind", "variants")
    assert variants.returncode == 0, variants.stderr
    assert all(g["kind"] == "variants" for g in json.loads(variants.stdout)["groups"])
    wrong = in_process("indexer", "duplicates", "--kind", "similar")
    assert wrong.returncode == 2 and "choose exact, near or variants" in wrong.stderr


def test_the_api_dismisses_only_pairs_of_indexed_images(
    env: dict[str, str], tmp_path: Path
) -> None:
    """A dismissal names images by record id; a path only picks one of that record's own
    paths, so a request cannot name anything else on the disk."""
    from fastapi.testclient import TestClient

    from query.client import QueryClient
    from query.server import create_app
    from tests.conftest import garment_image

    red = garment_image(tmp_path / "photos" / "red.png", "red")
    shutil.copyfile(red, tmp_path / "photos" / "red-copy.png")
    Image.open(red).resize((160, 200)).save(tmp_path / "photos" / "red-small.png")
    assert in_process("indexer", "run", str(tmp_path / "photos")).returncode == 0
    api = TestClient(
        create_app(QueryClient.from_env(), tmp_path / "thumbs"), base_url="http://127.0.0.1"
    )
    groups = api.get("/api/duplicates").json()["groups"]
    assert [g["kind"] for g in groups] == ["exact", "near"]
    exact = groups[0]["images"]
    assert exact[0]["width"] == 320 and exact[0]["thumbnail"].startswith("/api/images/")

    def dismiss(a: dict[str, Any], b: dict[str, Any]) -> int:
        return api.post("/api/duplicates/dismiss", json={"a": a, "b": b}).status_code

    foreign = {"id": exact[0]["id"], "path": "/etc/passwd"}
    assert dismiss(foreign, exact[1]) == 400  # not one of this image's paths
    assert dismiss({"id": "../../etc"}, exact[1]) == 404
    assert dismiss({"id": "0" * 32}, exact[1]) == 404
    assert dismiss(exact[0], exact[1]) == 200  # two paths of one record
    assert [g["kind"] for g in api.get("/api/duplicates").json()["groups"]] == ["near"]
    assert api.post("/api/duplicates/dismiss", json={"a": "x"}).status_code == 422
    assert red.exists() and (tmp_path / "photos" / "red-copy.png").exists()  # nothing deleted
