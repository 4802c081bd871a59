"""Peak memory of `indexer run` as the catalog grows: it must stay flat.

    python scripts/bench_memory.py --images 1000 --images 10000

For each size, writes that many distinct synthetic garment photos (JPEG, 300x400) into a
temporary folder, indexes them with the real `indexer run` process against the fake Gemini
server (no latency, a generous quota) into a fresh embedded store, and prints the process's
peak resident memory (ru_maxrss) and throughput. Image vectors are off: they add a fixed
model, not a per-image cost, and would make the 10,000-image run take many minutes.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from PIL import Image, ImageDraw

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.fake_gemini import API_KEY, PALETTE, FakeGemini  # noqa: E402


def write_photos(folder: Path, count: int) -> None:
    colors = list(PALETTE.values())
    for i in range(count):
        sub = folder / f"{i // 1000:03d}"  # catalogs come in folders
        sub.mkdir(parents=True, exist_ok=True)
        img = Image.new("RGB", (300, 400), colors[i % len(colors)])
        # A stripe at a position unique to i makes every file's bytes distinct.
        ImageDraw.Draw(img).rectangle(
            [i % 280, (i // 280) % 380, i % 280 + 20, 400], fill=(i % 251, 90, 40)
        )
        img.save(sub / f"{i:06d}.jpg", quality=85)


def peak_rss_mib(args: list[str], env: dict[str, str]) -> tuple[float, float]:
    started = time.monotonic()
    proc = subprocess.Popen(args, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        assert proc.stderr is not None  # stderr=PIPE
        raise SystemExit(
            f"indexer failed ({proc.returncode}): {proc.stderr.read().decode()[-2000:]}"
        )
    return usage.ru_maxrss / 1024, time.monotonic() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--images", type=int, action="append")
    args = parser.parse_args()
    sizes = args.images or [1_000, 10_000]
    results = []
    with FakeGemini() as fake:
        for count in sizes:
            with tempfile.TemporaryDirectory() as tmp:
                folder = Path(tmp) / "photos"
                write_photos(folder, count)
                env = {
                    **os.environ,
                    "GOOGLE_API_KEY": API_KEY,
                    "GEMINI_BASE_URL": fake.base_url,
                    "INDEXER_HOME": str(Path(tmp) / "home"),
                    "INDEXER_GENERATION_RPM": "1000000",
                    "INDEXER_EMBEDDING_RPM": "1000000",
                    "INDEXER_IMAGE_VECTORS": "false",
                    "ANONYMIZED_TELEMETRY": "False",
                }
                rss, seconds = peak_rss_mib(
                    [sys.executable, "-m", "indexer", "run", str(folder)], env
                )
                results.append((count, rss))
                print(
                    f"{count:>7} images: peak RSS {rss:7.1f} MiB, {seconds:6.1f}s "
                    f"({count / seconds:.0f} images/s)",
                    flush=True,
                )
    base_count, base_rss = results[0]
    for count, rss in results[1:]:
        print(f"peak RSS at {count} / at {base_count} images: {rss / base_rss:.2f}x")


if __name__ == "__main__":
    main()
