"""scripts/bench_estimate.py keeps its JSON contract: the dry run's estimate and the run's
reported tokens, on a few real photos through the real CLI against the fake server."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from scripts.bench_gemini import DATA
from tests.test_bench_query import bench


def test_bench_estimate_prints_its_json(tmp_path: Path, models_dir: Path) -> None:
    if not (DATA / "clothing-small").is_dir():
        pytest.skip(f"no dataset at {DATA}")
    done = bench(
        "bench_estimate.py", "--photos", "6", "--json", home=tmp_path, models_dir=models_dir
    )
    assert done.returncode == 0, done.stderr[-2000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert set(result) == {
        "photos", "estimated_tokens", "reported_tokens", "error", "estimated_usd", "reported_usd"
    }  # fmt: skip
    assert result["photos"] == 6 and result["reported_tokens"] > 0
    assert abs(result["error"]) <= 0.2  # the bound, on the fake's accounting


def test_bench_estimate_measures_a_batch_run(tmp_path: Path, models_dir: Path) -> None:
    if not (DATA / "clothing-small").is_dir():
        pytest.skip(f"no dataset at {DATA}")
    done = bench(
        "bench_estimate.py",
        "--photos",
        "4",
        "--batch",
        "--json",
        home=tmp_path,
        models_dir=models_dir,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["photos"] == 4 and abs(result["error"]) <= 0.2
    assert result["embedded_online"] == 0 and result["embedded_in_jobs"] == 8
