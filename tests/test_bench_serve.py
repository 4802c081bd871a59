"""scripts/bench_serve.py keeps its JSON contract: run on a small catalog (real MiniLM
vectors, real embedded Chroma, a real `query serve` process), its last line is the JSON
object other tools read, and every route answered without an error."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_bench_serve_prints_its_json(tmp_path: Path, models_dir: Path) -> None:
    env = {
        **os.environ,
        "INDEXER_HOME": str(tmp_path / "home"),
        "INDEXER_MODELS_DIR": str(models_dir),
        "ANONYMIZED_TELEMETRY": "False",
    }
    done = subprocess.run(
        [
            sys.executable,
            str(ROOT / "scripts" / "bench_serve.py"),
            *("--records", "300", "--clients", "2", "--seconds", "2", "--json"),
        ],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert (result["records"], result["clients"]) == (300, 2)
    assert result["cold_first_page_ms"] > 0
    assert set(result["routes"]) == {"browse", "text", "record", "thumbnail"}
    for route, figures in result["routes"].items():
        assert set(figures) == {"p50_ms", "p99_ms", "requests", "errors"}, route
        assert figures["requests"] > 0 and figures["errors"] == 0, (route, figures)
        assert 0 < figures["p50_ms"] <= figures["p99_ms"], (route, figures)
