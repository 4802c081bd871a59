"""scripts/bench_vocabulary.py keeps its JSON contract: on one photo of each label (real
photos, the fake Gemini server, the real pipeline), a default vocabulary asked for as enums
and a shop-sized one asked for as free keywords, every photo tagged."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from scripts.bench_gemini import DATA
from tests.test_bench_query import bench


def test_bench_vocabulary_prints_its_json(tmp_path: Path, models_dir: Path) -> None:
    if not (DATA / "clothing-small").is_dir():
        pytest.skip(f"no dataset at {DATA}")
    done = bench(
        "bench_vocabulary.py",
        *("--per-class", "1", "--json"),
        home=tmp_path,
        models_dir=models_dir,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    runs = json.loads(done.stdout.strip().splitlines()[-1])["runs"]
    assert [r["schema"] for r in runs] == ["enums", "free keywords, mapped"]
    assert runs[1]["keywords"] >= 600 and runs[0]["keywords"] < 200
    for run in runs:
        assert run["photos"] >= 10 and run["refused"] == 0, run
        assert 0 <= run["accuracy"] <= 1 and run["unmapped"] <= run["photos"], run
