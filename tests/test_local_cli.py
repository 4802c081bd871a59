"""The CLIs end to end with the offline provider: no key, no network, real models."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from indexer.cli import app as indexer_app
from query.cli import app as query_app

pytest.importorskip("torch")
pytest.importorskip("sentence_transformers")

runner = CliRunner()


def test_index_and_query_offline_with_no_key(
    dataset: Path, env: dict[str, str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delenv("GOOGLE_API_KEY")
    monkeypatch.setenv("GEMINI_BASE_URL", "http://127.0.0.1:9")  # nothing may be called
    photos = tmp_path / "photos"
    for cls in ("dress", "shoes", "hat"):
        (photos / cls).mkdir(parents=True)
        for src in sorted((dataset / "validation" / cls).glob("*.jpg"))[:4]:
            (photos / cls / src.name).symlink_to(src)

    result = runner.invoke(indexer_app, ["run", str(photos)])
    assert result.exit_code == 0, result.output
    assert "using the offline 'local' provider" in result.output
    assert "indexed 12" in result.output

    found = runner.invoke(query_app, ["text", "a hat", "--json", "-n", "4"])
    assert found.exit_code == 0, found.output
    hits = json.loads(found.stdout)
    assert sum(Path(h["path"]).parent.name == "hat" for h in hits) >= 3

    shoes = runner.invoke(query_app, ["text", "shoes", "-w", "garment=shoes", "--json"])
    assert {Path(h["path"]).parent.name for h in json.loads(shoes.stdout)} == {"shoes"}

    status = runner.invoke(indexer_app, ["status"])
    assert "built with local:all-MiniLM-L6-v2 (384-d)" in status.output


def test_query_image_uses_the_image_vectors(
    dataset: Path, env: dict[str, str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delenv("GOOGLE_API_KEY")
    photos = tmp_path / "photos"
    for cls in ("shoes", "dress", "pants", "hat"):
        (photos / cls).mkdir(parents=True)
        for src in sorted((dataset / "validation" / cls).glob("*.jpg"))[1:6]:
            (photos / cls / src.name).symlink_to(src)
    assert runner.invoke(indexer_app, ["run", str(photos)]).exit_code == 0
    probe = sorted((dataset / "validation" / "shoes").glob("*.jpg"))[0]  # not indexed
    found = runner.invoke(query_app, ["image", str(probe), "--json", "-n", "5"])
    assert found.exit_code == 0, found.output
    hits = json.loads(found.stdout)
    assert sum(Path(h["path"]).parent.name == "shoes" for h in hits) >= 4
    scores = [h["score"] for h in hits]
    assert len(set(scores)) > 1  # the visual route separates photos with equal captions


def test_train_tagger_teaches_a_new_facet(
    dataset: Path, env: dict[str, str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """A shop's own rule: shorts and T-shirts are summer, jackets and long sleeves winter."""
    monkeypatch.delenv("GOOGLE_API_KEY")
    teach = tmp_path / "teach"
    held_out = {}
    for keyword, classes in {
        "summer": ("shorts", "t-shirt"),
        "winter": ("outwear", "longsleeve"),
    }.items():
        (teach / "season" / keyword).mkdir(parents=True)
        for cls in classes:
            photos = sorted((dataset / "train" / cls).glob("*.jpg"))
            for src in photos[:15]:
                (teach / "season" / keyword / f"{cls}-{src.name}").symlink_to(src)
            held_out[cls] = sorted((dataset / "validation" / cls).glob("*.jpg"))[:3]

    result = runner.invoke(indexer_app, ["train-tagger", str(teach)])
    assert result.exit_code == 0, result.output
    assert "season: summer 30, winter 30; holdout accuracy" in result.stdout
    accuracy = float(result.stdout.split("holdout accuracy ")[1].split(";")[0])
    assert accuracy >= 0.75

    target = tmp_path / "new"
    target.mkdir()
    for cls, paths in held_out.items():
        for src in paths:
            (target / f"{cls}-{src.name}").symlink_to(src)
    assert runner.invoke(indexer_app, ["run", str(target)]).exit_code == 0
    summer = runner.invoke(query_app, ["text", "clothes", "-w", "season=summer", "--json"])
    names = [Path(h["path"]).name.split("-")[0] for h in json.loads(summer.stdout)]
    assert names and sum(n in ("shorts", "t") for n in names) >= 0.75 * len(names)


def test_train_tagger_refuses_keywords_outside_the_vocabulary(
    env: dict[str, str], tmp_path: Path
) -> None:
    (tmp_path / "teach" / "season" / "monsoon").mkdir(parents=True)
    result = runner.invoke(indexer_app, ["train-tagger", str(tmp_path / "teach")])
    assert result.exit_code == 2
    assert "season/monsoon is not a season keyword" in result.output


def test_gemini_built_collections_get_image_vectors_too(
    fake: object, env: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The text-only embedding model: pictures get their vectors from the local image model.
    monkeypatch.setenv("GEMINI_EMBEDDING_MODEL", "gemini-embedding-001")
    from indexer.config import load_settings
    from indexer.store import ImageStore
    from indexer.vision import IMAGE_SPEC
    from tests.conftest import garment_image

    for color in ("red", "blue", "green"):
        garment_image(tmp_path / "photos" / f"{color}.png", color)
    assert runner.invoke(indexer_app, ["run", str(tmp_path / "photos")]).exit_code == 0
    store = ImageStore.open(load_settings())
    assert store.spec.provider == "gemini"
    assert store.image_spec == IMAGE_SPEC
    probe = garment_image(tmp_path / "probe.png", "blue", size=(300, 300))
    hits = json.loads(runner.invoke(query_app, ["image", str(probe), "--json"]).stdout)
    assert Path(hits[0]["path"]).name == "blue.png"


@pytest.mark.parametrize(
    "feature_model, rows, message",
    [
        ("resnet-18", 512, "season.npz was trained on 'resnet-18' features"),
        # a head in the user's folder that names the right model but has the wrong shape
        ("efficientnet-lite2", 512, "season.npz reads 512-d features, but 'efficientnet-lite2'"),
    ],
)
def test_a_head_trained_on_another_image_model_is_refused(
    env: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    feature_model: str,
    rows: int,
    message: str,
) -> None:
    import numpy as np

    from indexer.tagger import LinearHead
    from tests.conftest import garment_image

    monkeypatch.delenv("GOOGLE_API_KEY")
    heads = Path(env["INDEXER_HOME"]) / "heads"
    heads.mkdir(parents=True)
    LinearHead(
        "season",
        ("summer", "winter"),
        np.zeros((rows, 2), dtype=np.float32),
        np.zeros(2, dtype=np.float32),
        feature_model,
    ).save(heads / "season.npz")
    garment_image(tmp_path / "photos" / "red.jpg", "red")
    result = runner.invoke(indexer_app, ["run", str(tmp_path / "photos")])
    assert result.exit_code == 2
    assert message in result.output
    assert "retrain it with `indexer train-tagger`" in result.output


def test_train_tagger_skips_bad_files_and_hidden_folders_and_never_writes_through_a_link(
    env: dict[str, str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from tests.conftest import garment_image

    monkeypatch.delenv("GOOGLE_API_KEY")
    teach = tmp_path / "teach"
    for keyword, color in (("summer", "yellow"), ("winter", "black")):
        for i in range(6):
            garment_image(teach / "season" / keyword / f"{i}.png", color, (200 + i, 240))
    (teach / "season" / "summer" / "broken.jpg").write_text("not a photo")
    (teach / ".thumbnails" / "x").mkdir(parents=True)  # a photo manager's cache
    (teach / "season" / ".cache").mkdir()
    victim = tmp_path / "victim.txt"
    victim.write_text("keep me")
    heads = Path(env["INDEXER_HOME"]) / "heads"
    heads.mkdir(parents=True)
    (heads / "season.npz").symlink_to(victim)
    result = runner.invoke(indexer_app, ["train-tagger", str(teach)])
    assert result.exit_code == 0, result.output
    assert "broken.jpg: not a recognised image format" in result.output
    assert "season: summer 6, winter 6" in result.output
    assert victim.read_text() == "keep me"
    assert not (heads / "season.npz").is_symlink() and (heads / "season.npz").is_file()
