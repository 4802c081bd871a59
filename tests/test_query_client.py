"""The Python query client, as another tool would use it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from indexer.cli import app as indexer_app
from indexer.records import ImageRecord
from indexer.store import ImageStore
from query import QueryClient, QueryError, QueryResult, StoreError, parse_where
from tests.conftest import garment_image, in_another_process
from tests.fake_gemini import FakeGemini


def test_importing_the_client_loads_no_model_or_store_code() -> None:
    code = (
        "import sys, query\n"
        "heavy = [m for m in ('chromadb', 'google.genai', 'torch', 'numpy') if m in sys.modules]\n"
        "assert not heavy, heavy\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_parse_where() -> None:
    assert parse_where(["season=summer", "season=fall", "color = red"]) == {
        "season": ["summer", "fall"],
        "color": ["red"],
    }
    with pytest.raises(QueryError):
        parse_where(["=x"])


def test_text_and_image_queries_return_typed_results(
    fake: FakeGemini, env: dict[str, str], tmp_path: Path
) -> None:
    fake.by_color["red"] = {
        "keywords": {"garment": ["dress"], "season": ["summer"], "color": ["red"]},
        "caption": "A red summer dress.",
    }
    for color in ("red", "blue", "green"):
        garment_image(tmp_path / "photos" / f"{color}.png", color)
    assert CliRunner().invoke(indexer_app, ["run", str(tmp_path / "photos")]).exit_code == 0

    with QueryClient.from_env() as client:
        hits = client.text("colorful dress", where={"season": "summer"}, limit=5)
        assert len(hits) == 1 and isinstance(hits[0], QueryResult)
        assert Path(hits[0].path).name == "red.png"
        assert hits[0].keywords["garment"] == ["dress"]
        assert hits[0].to_dict()["caption"] == "A red summer dress."

        similar = client.image(tmp_path / "photos" / "blue.png", limit=1)
        assert Path(similar[0].path).name == "blue.png"

        with pytest.raises(QueryError, match="unknown facet"):
            client.text("dress", where={"fabric": "silk"})
        with pytest.raises(QueryError, match="limit"):
            client.text("dress", limit=0)

        # A thousand repeats of one term are one term; too many distinct ones are refused
        # before Chroma sees them.
        repeated = client.text("dress", where={"season": ["summer"] * 1000}, limit=5)
        assert [h.id for h in repeated] == [h.id for h in hits]
        every = [w for words in client.vocabulary.facets.values() for w in words]
        facet_of = {w: f for f, words in client.vocabulary.facets.items() for w in words}
        many: dict[str, list[str]] = {}
        for word in every[:40]:
            many.setdefault(facet_of[word], []).append(word)
        with pytest.raises(QueryError, match="at most 8"):
            client.text("dress", where=many)

    # Overrides go on top of the environment.
    other = QueryClient.from_env(collection="not-there")
    with pytest.raises(StoreError, match="no collection 'not-there'"):
        other.text("dress")


def test_browsing_shows_what_a_writer_adds_deletes_and_re_tags_without_a_restart(
    fake: FakeGemini, env: dict[str, str], tmp_path: Path
) -> None:
    """Exact pages and counts while a writer writes, however the size moves (here, not at
    all: one added, one deleted, one re-tagged)."""
    import time

    for color in ("red", "blue"):
        garment_image(tmp_path / "photos" / f"{color}.png", color)
    assert CliRunner().invoke(indexer_app, ["run", str(tmp_path / "photos")]).exit_code == 0
    with QueryClient.from_env() as client:
        assert client.browse().total == 2

        def seen() -> tuple[set[str], dict[str, int]]:
            page = client.browse()
            return {Path(r.path).name for r in page.records}, page.counts.get("color", {})

        garment_image(tmp_path / "more" / "green.png", "green")
        assert CliRunner().invoke(indexer_app, ["run", str(tmp_path / "more")]).exit_code == 0
        built = ImageStore.open(client.settings)
        with ImageStore.open(
            client.settings, write=True, spec=built.spec, image_spec=built.image_spec
        ) as writer:
            assert writer.remove_paths([str(tmp_path / "photos" / "red.png")]) == 1
            blue = next(r for r in writer.records(vectors=True) if r.path.endswith("blue.png"))
            assert blue.embedding is not None
            black = {**blue.keywords, "color": ["black"]}
            writer.upsert(  # re-tagged: the same image, another colour
                [
                    ImageRecord(
                        id=blue.id,
                        path=blue.path,
                        caption=blue.caption,
                        keywords=black,
                        raw_keywords=black,
                        embedding=blue.embedding,
                        model_ids={"embedding_model": built.spec.model},
                        vocabulary="v1",
                        image_embedding=blue.image_embedding,
                    )
                ]
            )
        assert client.browse().total == 2  # the same size all along
        deadline = time.monotonic() + 60  # a listing is read again a second apart at least
        while seen() != ({"blue.png", "green.png"}, {"black": 1, "green": 1}):
            assert time.monotonic() < deadline, seen()
            time.sleep(0.2)


def test_a_restarted_client_pages_at_once_from_the_kept_listing_then_catches_up(
    fake: FakeGemini, env: dict[str, str], tmp_path: Path
) -> None:
    import time

    garment_image(tmp_path / "photos" / "red.png", "red")
    assert CliRunner().invoke(indexer_app, ["run", str(tmp_path / "photos")]).exit_code == 0
    with QueryClient.from_env() as first:
        assert first.browse().total == 1  # read, and kept for the next start
    garment_image(tmp_path / "more" / "blue.png", "blue")
    assert CliRunner().invoke(indexer_app, ["run", str(tmp_path / "more")]).exit_code == 0
    with QueryClient.from_env() as restarted:
        assert restarted.browse().total == 1  # the kept listing: no wait for a whole read
        deadline = time.monotonic() + 60
        while (page := restarted.browse()).total != 2:  # read again meanwhile
            assert time.monotonic() < deadline, page.total
            time.sleep(0.1)


KILLED_BEFORE_THE_MARK = """
import os, signal, sys
from chromadb.api.models.Collection import Collection
from indexer.cli import main

real = Collection.upsert

def upsert(self, *args, **kwargs):
    # Chroma's own method: the worker dies with its records written, the mark not moved.
    if self.name.endswith("-changes"):
        os.kill(os.getpid(), signal.SIGKILL)
    return real(self, *args, **kwargs)

Collection.upsert = upsert
sys.argv = ["indexer", "run", sys.argv[1]]
main()
"""


def test_browsing_shows_what_a_worker_wrote_before_it_was_killed(
    fake: FakeGemini, env: dict[str, str], tmp_path: Path
) -> None:
    """Killed between its records and the change mark: the records still show (the size
    moved), a crash losing nothing for readers either."""
    import os
    import time

    garment_image(tmp_path / "photos" / "red.png", "red")
    assert CliRunner().invoke(indexer_app, ["run", str(tmp_path / "photos")]).exit_code == 0
    with QueryClient.from_env() as client:
        assert client.browse().total == 1
        garment_image(tmp_path / "more" / "blue.png", "blue")
        killed = subprocess.run(
            [sys.executable, "-c", KILLED_BEFORE_THE_MARK, str(tmp_path / "more")],
            capture_output=True,
            text=True,
            env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])},
            timeout=300,
        )
        assert killed.returncode < 0, killed.stderr
        deadline = time.monotonic() + 60  # a listing is read again a second apart at least
        while (page := client.browse()).total != 2:
            assert time.monotonic() < deadline, page.total
            time.sleep(0.2)


def test_searches_find_what_another_process_wrote_without_a_restart(
    fake: FakeGemini, env: dict[str, str], tmp_path: Path
) -> None:
    """An embedded engine keeps the vector index it loaded: a search must not stay blind to
    images another process indexed after it (here a real `indexer run` process)."""
    import time

    garment_image(tmp_path / "photos" / "red.png", "red")
    assert CliRunner().invoke(indexer_app, ["run", str(tmp_path / "photos")]).exit_code == 0
    with QueryClient.from_env() as client:

        def found() -> set[str]:
            return {Path(h.path).name for h in client.text("a garment", limit=10)}

        assert found() == {"red.png"}  # the index is loaded now
        garment_image(tmp_path / "more" / "blue.png", "blue")
        wrote = in_another_process("run", str(tmp_path / "more"))
        assert wrote.returncode == 0, wrote.stderr
        assert client.browse().total == 2
        deadline = time.monotonic() + 60  # the engine is opened anew in the background
        while (names := found()) != {"red.png", "blue.png"}:
            assert time.monotonic() < deadline, names
            time.sleep(0.2)
        assert {Path(h.path).name for h in client.text("a garment", where={"color": "blue"})} == {
            "blue.png"
        }
