"""Ingestion throughput against the fake Gemini server with realistic latency and a quota.

    python scripts/bench_ingest.py --images 240 --rpm 240

Prints achieved images/s and its ratio to what the generation quota allows. Uses photos
from ../shared/datasets/clothing-small when present, synthetic ones otherwise.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.conftest import DATASET, garment_image  # noqa: E402
from tests.fake_gemini import API_KEY, PALETTE, FakeGemini  # noqa: E402


def photos(folder: Path, count: int) -> Path:
    folder.mkdir(parents=True)
    sources = sorted((DATASET / "train").rglob("*.jpg"))[:count] if DATASET.is_dir() else []
    for i, src in enumerate(sources):
        (folder / f"{i:06d}.jpg").symlink_to(src)
    colors = list(PALETTE)
    for i in range(len(sources), count):
        garment_image(folder / f"{i:06d}.png", colors[i % len(colors)], size=(300 + i % 97, 400))
    return folder


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--images", type=int, default=240)
    parser.add_argument("--rpm", type=int, default=240, help="generation quota per minute")
    parser.add_argument("--generation-latency", type=float, default=0.4)
    parser.add_argument("--embedding-latency", type=float, default=0.15)
    parser.add_argument("--concurrency", type=int, default=8)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp, FakeGemini() as fake:
        fake.latency = {
            "generateContent": args.generation_latency,
            "batchEmbedContents": args.embedding_latency,
        }
        folder = photos(Path(tmp) / "photos", args.images)
        env = {
            **os.environ,
            "GOOGLE_API_KEY": API_KEY,
            "GEMINI_BASE_URL": fake.base_url,
            "INDEXER_HOME": str(Path(tmp) / "home"),
            "INDEXER_GENERATION_RPM": str(args.rpm),
            "INDEXER_EMBEDDING_RPM": "3000",
            "INDEXER_CONCURRENCY": str(args.concurrency),
            "ANONYMIZED_TELEMETRY": "False",
        }
        # Warm the keyword cache and Chroma so that the timed run measures steady state.
        warm = Path(tmp) / "warm"
        garment_image(warm / "w.png", "red")
        subprocess.run(["indexer", "run", str(warm)], env=env, check=True, capture_output=True)
        started = time.monotonic()
        subprocess.run(["indexer", "run", str(folder)], env=env, check=True, capture_output=True)
        seconds = time.monotonic() - started

    # The limiter allows rpm/60 per second (and rpm per minute): that is the ceiling.
    allowed = args.rpm / 60
    rate = args.images / seconds
    print(f"images               {args.images}")
    print(
        f"generation latency   {args.generation_latency * 1000:.0f} ms, "
        f"embedding latency {args.embedding_latency * 1000:.0f} ms"
    )
    print(f"quota                {args.rpm}/min = {allowed:.2f} images/s")
    print(f"wall time            {seconds:.1f} s (process start and Chroma open included)")
    print(f"achieved             {rate:.2f} images/s = {rate / allowed:.2f} of the quota")


if __name__ == "__main__":
    main()
