"""scripts/bench_query.py keeps its JSON contract: run on small real catalogs (real
MiniLM vectors, real embedded Chroma), its last line is the JSON object other tools read."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def bench(
    script: str, *args: str, home: Path, models_dir: Path
) -> subprocess.CompletedProcess[str]:
    """`python scripts/SCRIPT ARGS` with its own data folder and the suite's models."""
    env = {
        **os.environ,
        "INDEXER_HOME": str(home / "home"),
        "INDEXER_MODELS_DIR": str(models_dir),
        "ANONYMIZED_TELEMETRY": "False",
    }
    return subprocess.run(
        [sys.executable, str(ROOT / "scripts" / script), *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=home,
        timeout=600,
    )


def test_bench_query_prints_its_json_and_ratios(tmp_path: Path, models_dir: Path) -> None:
    done = bench(
        "bench_query.py",
        *("--records", "200", "--records", "400"),
        *("--mode", "embedded", "--queries", "4", "--distinct", "200", "--json"),
        home=tmp_path,
        models_dir=models_dir,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    lines = done.stdout.strip().splitlines()
    runs = json.loads(lines[-1])
    assert [(r["records"], r["mode"]) for r in runs] == [(200, "embedded"), (400, "embedded")]
    for run in runs:
        cases = {c["filter"]: c for c in run["cases"]}
        assert {"none", "season=summer", "garment=dress,season=summer"} <= cases.keys()
        for case in cases.values():
            assert {"matching_fraction", "p50_ms", "p99_ms", "recall_at_10"} <= case.keys()
            assert 0 < case["p50_ms"] <= case["p99_ms"]
            # At a few hundred records ef_search covers the whole graph: the search is exact.
            assert case["recall_at_10"] >= 0.95, case
        assert cases["none"]["matching_fraction"] == 1.0
        assert 0.15 < cases["season=summer"]["matching_fraction"] < 0.35
        assert cases["garment=dress,season=summer"]["matching_fraction"] < 0.05
        assert cases["none"]["chroma_only_p50_ms"] > 0
    assert "embedded: unfiltered p50 at 400 over 200:" in done.stdout
    assert "embedded 400: p50 over the unfiltered p50: season=summer" in done.stdout
