"""`indexer export`: JSON lines, CSV, Parquet and XMP sidecars from a real indexed collection."""

from __future__ import annotations

import csv
import io
import json
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from typer.testing import CliRunner

from indexer.cli import app
from indexer.export import NS
from tests.conftest import garment_image
from tests.fake_gemini import FakeGemini

runner = CliRunner()

ANSWERS = {
    "red": {
        "keywords": {"garment": ["dress"], "season": ["summer"], "color": ["red"]},
        "caption": 'A red summer dress & more <for> "women".',
    },
    "blue": {
        "keywords": {"garment": ["jeans"], "color": ["blue"], "material": ["denim"]},
        "caption": "Blue denim jeans.",
    },
}


@pytest.fixture
def indexed(fake: FakeGemini, env: dict[str, str], tmp_path: Path) -> Path:
    fake.by_color.update(ANSWERS)
    folder = tmp_path / "photos"
    garment_image(folder / "red.jpg", "red")
    garment_image(folder / "sub" / "blue.png", "blue")
    assert runner.invoke(app, ["run", str(folder)]).exit_code == 0
    return folder


def test_jsonl_has_every_record_with_keywords_per_facet(indexed: Path) -> None:
    result = runner.invoke(app, ["export", "--format", "jsonl"])
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in result.stdout.splitlines()]
    by_name = {Path(r["path"]).name: r for r in rows}
    assert set(by_name) == {"red.jpg", "blue.png"}
    red = by_name["red.jpg"]
    assert red["caption"] == ANSWERS["red"]["caption"]
    assert red["keywords"]["garment"] == ["dress"] and red["keywords"]["material"] == []
    assert set(red) == {"id", "path", "keywords", "caption", "copies"}  # no vectors unless asked


def test_csv_and_vectors(indexed: Path, tmp_path: Path) -> None:
    out = tmp_path / "records.csv"
    result = runner.invoke(app, ["export", "-f", "csv", "-o", str(out), "--vectors"])
    assert result.exit_code == 0, result.output
    rows = list(csv.DictReader(io.StringIO(out.read_text())))
    blue = next(r for r in rows if r["path"].endswith("blue.png"))
    assert blue["garment"] == "jeans" and blue["material"] == "denim" and blue["season"] == ""
    assert len(json.loads(blue["embedding"])) == 768


def test_parquet_keeps_keyword_lists(indexed: Path, tmp_path: Path) -> None:
    pq = pytest.importorskip("pyarrow.parquet")
    out = tmp_path / "out" / "records.parquet"
    result = runner.invoke(app, ["export", "-f", "parquet", "-o", str(out), "--vectors"])
    assert result.exit_code == 0, result.output
    table = pq.read_table(out).to_pylist()
    assert len(table) == 2
    red = next(r for r in table if r["path"].endswith("red.jpg"))
    assert red["keywords_season"] == ["summer"] and red["keywords_style"] == []
    assert len(red["embedding"]) == 768


def test_xmp_sidecars_beside_the_images_and_originals_untouched(indexed: Path) -> None:
    originals = {p: p.read_bytes() for p in indexed.rglob("*") if p.is_file()}
    # darktable's own sidecar for the blue photo must survive.
    foreign = indexed / "sub" / "blue.png.xmp"
    foreign.write_text("<x:xmpmeta>darktable history</x:xmpmeta>")
    result = runner.invoke(app, ["export", "--xmp"])
    assert result.exit_code == 0, result.output
    assert "wrote 1 XMP sidecars" in result.output and "skipped" in result.output
    assert foreign.read_text() == "<x:xmpmeta>darktable history</x:xmpmeta>"
    for path, data in originals.items():
        assert path.read_bytes() == data

    tree = ET.parse(indexed / "red.jpg.xmp")
    subjects = [li.text for li in tree.iterfind(".//dc:subject/rdf:Bag/rdf:li", NS)]
    assert subjects == ["dress", "summer", "red"]
    hierarchy = [li.text for li in tree.iterfind(".//lr:hierarchicalSubject/rdf:Bag/rdf:li", NS)]
    assert "garment|dress" in hierarchy
    description = tree.find(".//dc:description/rdf:Alt/rdf:li", NS)
    assert description is not None and description.text == ANSWERS["red"]["caption"]
    # Re-exporting refreshes our own sidecars.
    assert "wrote 1 XMP sidecars" in runner.invoke(app, ["export", "--xmp"]).output


def test_xmp_into_a_target_folder_mirrors_the_indexed_folders(
    indexed: Path, tmp_path: Path
) -> None:
    target = tmp_path / "sidecars"
    result = runner.invoke(app, ["export", "--xmp-dir", str(target)])
    assert result.exit_code == 0, result.output
    assert sorted(p.relative_to(target).as_posix() for p in target.rglob("*.xmp")) == [
        "red.jpg.xmp",
        "sub/blue.png.xmp",
    ]
    assert not list(indexed.rglob("*.xmp"))


def test_xmp_into_a_target_folder_keeps_two_indexed_folders_apart(
    indexed: Path, tmp_path: Path
) -> None:
    shop = tmp_path / "shop" / "photos"  # the same relative path as a photo of `indexed`
    garment_image(shop / "red.jpg", "blue")
    assert runner.invoke(app, ["run", str(shop)]).exit_code == 0
    target = tmp_path / "sidecars"
    result = runner.invoke(app, ["export", "--xmp-dir", str(target)])
    assert result.exit_code == 0, result.output
    made = sorted(p.relative_to(target).as_posix() for p in target.rglob("*.xmp"))
    assert len(made) == 3 and "wrote 3 XMP sidecars" in result.output
    # Both folders are called "photos": each keeps its whole path.
    assert f"{shop.relative_to(shop.anchor).as_posix()}/red.jpg.xmp" in made
    assert f"{indexed.relative_to(indexed.anchor).as_posix()}/sub/blue.png.xmp" in made


def test_export_needs_a_format_or_xmp(indexed: Path) -> None:
    for args in ([], ["-f", "xml"], ["-f", "parquet"]):
        result = runner.invoke(app, ["export", *args])
        assert result.exit_code == 2 and "error:" in result.output
