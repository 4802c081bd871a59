"""The engine searches run on: opened anew once another process wrote, and the previous one
closed only after the last search on it is done (real embedded Chroma, a real writer)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from indexer.config import load_settings
from indexer.errors import StoreError
from indexer.store import ImageStore
from query.searchers import Searchers
from tests.conftest import garment_image, in_another_process, in_process
from tests.fake_gemini import FakeGemini


def test_a_search_in_flight_keeps_its_engine_until_done(
    fake: FakeGemini, env: dict[str, str], tmp_path: Path
) -> None:
    garment_image(tmp_path / "photos" / "red.png", "red")
    assert in_process("indexer", "run", str(tmp_path / "photos")).returncode == 0
    settings = load_settings()
    main = ImageStore.open(settings)
    red = next(main.records(vectors=True))
    assert red.embedding is not None
    vector = red.embedding
    searchers = Searchers(settings)

    with searchers.engine(main, vector, False) as held:
        assert [n.id for n in held.planner.nearest(vector, 10, {}, False)] == [red.id]
        garment_image(tmp_path / "more" / "blue.png", "blue")
        wrote = in_another_process("run", str(tmp_path / "more"))
        assert wrote.returncode == 0, wrote.stderr
        deadline = time.monotonic() + 60  # opened in the background, a second apart at least
        while True:
            with searchers.engine(main, vector, False) as now:
                if now is not held:
                    break
            assert time.monotonic() < deadline
            time.sleep(0.1)
        assert len(now.planner.nearest(vector, 10, {}, False)) == 2
        # Retired, but a search is still on it: it answers as it did.
        assert [n.id for n in held.planner.nearest(vector, 10, {}, False)] == [red.id]
    # The last search left: its engine is closed, its indexes freed (chromadb's closed
    # engine fails with an AttributeError of its own).
    with pytest.raises((StoreError, AttributeError)):
        held.store.nearest(vector, 10)
    searchers.close()
