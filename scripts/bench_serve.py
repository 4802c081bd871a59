"""`query serve` under concurrent clients at catalog scale.

    python scripts/bench_serve.py --records 200000 --clients 8 --json
    python scripts/bench_serve.py --records 1000000 --store /data/bench --json   # fill once

Fills a synthetic catalog of N records (as scripts/bench_query.py fills one: one keyword per
facet, captions, the offline provider's MiniLM vectors), or reuses the one kept under
`--store`, plus 64 records of real image files so that a record and its thumbnail can be
served. Then starts `query serve` on loopback as a process over it and times the first page
of browsing (`cold_first_page_ms`: the first `/api/images` answer once the server listens),
and drives C concurrent clients for `--seconds` through browse (unfiltered, and
`season=summer`, at varying offsets), text search, a record and a thumbnail. Prints p50 and
p99 per route; with `--json` the last line is {"records", "clients", "cold_first_page_ms",
"routes": {"browse" | "text" | "record" | "thumbnail": {"p50_ms", "p99_ms", "requests",
"errors"}}}.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import random
import socket
import statistics
import subprocess
import sys
import threading
import time
from collections import defaultdict
from pathlib import Path

import httpx
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from indexer.images import content_id  # noqa: E402
from indexer.providers.local import LocalProvider  # noqa: E402
from indexer.records import ImageRecord  # noqa: E402
from indexer.store import ImageStore  # noqa: E402
from indexer.vocabulary import Vocabulary  # noqa: E402
from scripts.bench_query import DISTINCT, FILL_CHUNK, TEXTS, fill, folder, store_settings  # noqa: E402

ROUTES = ("browse", "text", "record", "thumbnail")
SERVED = 64  # records of real files, for the record and thumbnail routes
COLORS = [(200, 30, 30), (30, 60, 200), (30, 160, 60), (220, 200, 40), (20, 20, 20)]


def served_files(where: Path, store: ImageStore, provider: LocalProvider) -> list[str]:
    """SERVED real JPEGs under `where`, each recorded under its content id; their ids."""
    where.mkdir(parents=True, exist_ok=True)
    files = []
    for i in range(SERVED):
        path = where / f"served-{i:02d}.jpg"
        if not path.exists():
            buf = io.BytesIO()
            Image.new("RGB", (400 + i, 500), COLORS[i % len(COLORS)]).save(buf, "JPEG")
            path.write_bytes(buf.getvalue())
        files.append((content_id(path.read_bytes()), path))
    known = store.known_paths([rid for rid, _ in files])
    keywords = {"garment": ["dress"], "season": ["summer"]}
    vector = provider.embed_documents(["dress, summer. A plain dress."])[0]
    fingerprint = Vocabulary.load().fingerprint
    store.upsert(
        [
            ImageRecord(
                id=rid,
                path=str(path),
                caption="A plain dress.",
                keywords=keywords,
                raw_keywords=keywords,
                embedding=vector,
                model_ids=provider.model_ids,
                vocabulary=fingerprint,
            )
            for rid, path in files
            if known.get(rid) != str(path)
        ]
    )
    return [rid for rid, _ in files]


def written(store: ImageStore, records: int) -> int:
    """How many of the fill's records a kept catalog holds: fill writes ids 00000000 on in
    order, FILL_CHUNK at a time, so the first chunk whose first id is missing is where a
    fill that stopped (or a smaller catalog copied here to grow) goes on."""
    low, high = 0, -(-records // FILL_CHUNK)
    while low < high:
        middle = (low + high) // 2
        if store.known_paths([f"{middle * FILL_CHUNK:08d}"]):
            low = middle + 1
        else:
            high = middle
    return min(records, low * FILL_CHUNK)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, int(share * len(ordered)))], 1)


def drive(base: str, ids: list[str], clients: int, seconds: float) -> dict[str, dict[str, float]]:
    """C threads, each asking the routes in turn until `seconds` have passed."""
    times: dict[str, list[float]] = defaultdict(list)
    errors: dict[str, int] = defaultdict(int)
    lock = threading.Lock()
    deadline = time.monotonic() + seconds

    def client(k: int) -> None:
        chance = random.Random(k)
        with httpx.Client(base_url=base, timeout=120) as http:
            turn = k
            while time.monotonic() < deadline:
                route = ROUTES[turn % len(ROUTES)]
                turn += 1
                if route == "browse":
                    params: list[tuple[str, str | int | float | bool | None]] = [
                        ("offset", str(24 * chance.randrange(5)))
                    ]
                    if chance.random() < 0.5:
                        params.append(("where", "season=summer"))
                    url = "/api/images"
                elif route == "text":
                    params = [("q", f"{chance.choice(TEXTS)} {chance.randrange(1000)}")]
                    url = "/api/search"
                else:
                    rid = chance.choice(ids)
                    params = []
                    url = f"/api/images/{rid}" + ("/thumbnail" if route == "thumbnail" else "")
                t0 = time.perf_counter()
                try:
                    ok = http.get(url, params=params).status_code == 200
                except httpx.HTTPError:
                    ok = False
                elapsed = (time.perf_counter() - t0) * 1000
                with lock:
                    times[route].append(elapsed)
                    errors[route] += 0 if ok else 1

    threads = [threading.Thread(target=client, args=(k,)) for k in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return {
        route: {
            "p50_ms": round(statistics.median(times[route]), 1) if times[route] else 0.0,
            "p99_ms": percentile(times[route], 0.99) if times[route] else 0.0,
            "requests": len(times[route]),
            "errors": errors[route],
        }
        for route in ROUTES
    }


def measure(records: int, clients: int, seconds: float, kept: Path | None) -> dict[str, object]:
    with folder(kept, records) as tmp, store_settings("embedded", tmp, None) as settings:
        provider = LocalProvider(settings)
        with ImageStore.open(settings, write=True, spec=provider.embedding_spec) as store:
            have = written(store, records)
            if have < records:
                started = time.monotonic()
                # A small catalog draws on fewer kinds, so that filling it stays quick.
                kinds = min(DISTINCT, max(100, records // 4))
                fill(store, provider, Vocabulary.load(), records, True, kinds, have)
                print(f"wrote {records - have} records in {time.monotonic() - started:.0f}s")
            ids = served_files(tmp / "files", store, provider)
        port = free_port()
        env = {
            **os.environ,
            "INDEXER_HOME": str(settings.home),
            "INDEXER_MODELS_DIR": str(settings.models_dir),
            "CHROMA_COLLECTION": settings.collection,
            "ANONYMIZED_TELEMETRY": "False",
        }
        for name in ("CHROMA_HOST", "CHROMA_PATH", "GOOGLE_API_KEY", "GEMINI_API_KEY"):
            env.pop(name, None)
        server = subprocess.Popen(
            [sys.executable, "-m", "query", "serve", "--port", str(port)],
            env=env,
            cwd=tmp,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        base = f"http://127.0.0.1:{port}"
        try:
            while True:
                try:
                    httpx.get(f"{base}/api/facets", timeout=5)
                    break
                except httpx.TransportError:
                    if server.poll() is not None:
                        raise SystemExit(server.communicate()[1]) from None
                    time.sleep(0.05)
            t0 = time.perf_counter()
            first = httpx.get(f"{base}/api/images", timeout=600)
            cold = round((time.perf_counter() - t0) * 1000, 1)
            if first.status_code != 200:
                raise SystemExit(f"first page: {first.status_code} {first.text[:200]}")
            httpx.get(f"{base}/api/search", params={"q": TEXTS[0]}, timeout=600)  # model loaded
            routes = drive(base, ids, clients, seconds)
        finally:
            server.terminate()
            server.wait(timeout=60)
    return {"records": records, "clients": clients, "cold_first_page_ms": cold, "routes": routes}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--records", type=int, required=True)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=30.0, help="how long the clients run")
    parser.add_argument(
        "--store", type=Path, help="keep the filled catalog in STORE/<records> and reuse it"
    )
    parser.add_argument("--json", action="store_true", help="end with one JSON line")
    args = parser.parse_args()
    result = measure(args.records, args.clients, args.seconds, args.store)
    print(f"{args.records} records, {args.clients} clients:")
    print(f"  first page after a cold start: {result['cold_first_page_ms']} ms")
    routes = result["routes"]
    assert isinstance(routes, dict)
    for route, figures in routes.items():
        print(
            f"  {route:<10} p50 {figures['p50_ms']:>8} ms  p99 {figures['p99_ms']:>8} ms  "
            f"{figures['requests']} requests, {figures['errors']} errors"
        )
    if args.json:
        print(json.dumps(result))


if __name__ == "__main__":
    main()
