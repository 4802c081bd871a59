"""How close `indexer run --dry-run` comes to what the run then reports, on real photos
against the fake Gemini server (no key, no network).

    python scripts/bench_estimate.py [--photos 60] [--batch] [--json]

Runs the real CLI twice in a fresh home: `indexer run --dry-run --json` on the first
`--photos` photos of clothing-small/validation, then `indexer run` on them, and compares the
tokens estimated with the tokens the run reports (and the estimated cost with the cost
`indexer status` computes from them). The fake bills like Gemini 3 (image tokens by media
resolution, thinking tokens by level), but its output and thinking counts are its own: the
figure measures the estimate's arithmetic and its first-run guesses against those, so run
it against the real API for the real error. With `--batch` both are `--batch` runs (with
picture vectors from the embedding model), and the figures add how many of the photos'
texts and pictures were embedded online (none is the design) and in embedding jobs. With
`--json` the last line is {"photos", "estimated_tokens", "reported_tokens", "error",
"estimated_usd", "reported_usd"}, with "embedded_online" and "embedded_in_jobs" for `--batch`.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from scripts.bench_gemini import DATA  # noqa: E402
from tests.fake_gemini import API_KEY, FakeGemini  # noqa: E402


def main(argv: Sequence[str] = ()) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--photos", type=int, default=60)
    parser.add_argument("--batch", action="store_true", help="measure a --batch run")
    parser.add_argument("--json", action="store_true", help="end with one JSON line")
    args = parser.parse_args(argv)
    source = DATA / "clothing-small" / "validation"
    if not source.is_dir():
        print(f"no photos at {source}; nothing measured")
        return
    chosen = sorted(source.rglob("*.jpg"))[: args.photos]
    with FakeGemini() as fake, tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "photos"
        folder.mkdir()
        for i, photo in enumerate(chosen):
            (folder / f"{i:04d}.jpg").symlink_to(photo)
        env = {
            **{k: v for k, v in os.environ.items() if not k.startswith(("INDEXER_", "GEMINI_"))},
            "GEMINI_BASE_URL": fake.base_url,
            "GOOGLE_API_KEY": API_KEY,
            "INDEXER_HOME": str(Path(tmp) / "home"),
            "INDEXER_IMAGE_VECTORS": "true" if args.batch else "false",
            "INDEXER_BATCH_POLL_SECONDS": "0.2",
            "ANONYMIZED_TELEMETRY": "False",
        }
        fake.batch_seconds = 1.0
        mode = ["--batch"] if args.batch else []

        def indexer(*argv: str) -> str:
            done = subprocess.run(
                [sys.executable, "-m", "indexer", *argv], env=env, capture_output=True, text=True
            )
            if done.returncode != 0:
                raise SystemExit(done.stderr)
            return done.stdout

        dry = indexer("run", "--dry-run", "--json", *mode, str(folder))
        estimate = json.loads(dry.splitlines()[-1])
        ran = indexer("run", *mode, str(folder))
        status = json.loads(indexer("status", "--json"))
        online = sum(fake.online_embedded(task="document").values())
        online += sum(1 for k in fake.online_embedded() if re.fullmatch(r"[0-9a-f]{64}", k))
        in_jobs = sum(fake.batch_embedded().values())
    said = re.search(r"tokens: ([\d,]+) \(", ran)
    if said is None:
        raise SystemExit(f"the run reported no tokens: {ran}")
    reported = int(said.group(1).replace(",", ""))
    estimated = sum(estimate["tokens"].values())
    result = {
        "photos": len(chosen),
        "estimated_tokens": estimated,
        "reported_tokens": reported,
        "error": round((estimated - reported) / reported, 4),
        "estimated_usd": estimate["cost_usd"]["batch" if args.batch else "online"],
        "reported_usd": status["usage"]["cost_usd"],
    }
    print(
        f"{result['photos']} photos: estimated {estimated:,} tokens, the run reported "
        f"{reported:,} ({result['error']:+.1%}); estimated ${result['estimated_usd']} "
        f"{'in batch mode' if args.batch else 'online'}, the run's descriptions cost "
        f"${result['reported_usd']} at online prices"
    )
    if args.batch:
        result |= {"embedded_online": online, "embedded_in_jobs": in_jobs}
        print(f"photo texts and pictures embedded online {online}, in embedding jobs {in_jobs}")
    if args.json:
        print(json.dumps(result))


if __name__ == "__main__":
    main(sys.argv[1:])
