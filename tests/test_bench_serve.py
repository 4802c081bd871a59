"""scripts/bench_serve.py keeps its JSON contract: run on a small catalog (real MiniLM
vectors, real embedded Chroma, a real `query serve` process), its last line is the JSON
object other tools read, and every route answered without an error."""

from __future__ import annotations

import json
from pathlib import Path

from tests.test_bench_query import bench


def test_bench_serve_prints_its_json(tmp_path: Path, models_dir: Path) -> None:
    done = bench(
        "bench_serve.py",
        *("--records", "300", "--clients", "2", "--seconds", "2", "--json"),
        home=tmp_path,
        models_dir=models_dir,
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
