"""Searching the way shoppers ask, measured on held-out photos, for one provider at a time.

    python scripts/bench_similar.py --provider local  [--per-class 20] [--queries 5]
    python scripts/bench_similar.py --provider gemini [--per-class 20] [--queries 5]

Indexes `--per-class` photos of each class of clothing-small/validation in a fresh home (the
local provider offline; Gemini against the fake server, which plays a truthful model: each
photo's garment, and its colour as indexer/colors.py sees it, registered under the hash of
the JPEG sent, so the figures measure the plumbing and ranking rules, not Gemini's vision).
Then, through the Python client, with `--queries` indexed photos of each class as examples:

- more like this: same-garment hit rate and precision in the top five of `similar` (the
  record's stored vectors) and of `image` (the same photo as a file, itself left out), and
  the model calls `similar` made (0 is the design);
- a picture changed by words: for examples that are not red, the share of red records and
  of same-garment records in the top five of `image` and of `image --text red`;
- leaving out: black records among class-naming text queries' top ten, without and with
  `exclude color=black` (0 is the design);
- scores: the cosine scores of same-class and other-class hits in those text queries' top
  twenty, the floor that keeps nine in ten same-class hits, and whether `min_score` held.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import statistics
import sys
import tempfile
from collections import defaultdict
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from indexer.colors import dominant_color  # noqa: E402
from indexer.config import Settings, load_settings  # noqa: E402
from indexer.images import picture, prepare, read_source  # noqa: E402
from indexer.providers.base import Provider  # noqa: E402
from indexer.vocabulary import Vocabulary  # noqa: E402
from indexer.wiring import writing  # noqa: E402
from query import QueryClient  # noqa: E402
from query.hits import Hit  # noqa: E402
from scripts.bench_gemini import KEYWORD, QUERY  # noqa: E402
from tests.fake_gemini import API_KEY, FakeGemini  # noqa: E402

DATASET = ROOT.parent / "shared" / "datasets" / "clothing-small" / "validation"
CALLS = ("describe", "embed_documents", "embed_queries", "embed_images", "embed_composed")


def catalog(per_class: int) -> dict[Path, str]:
    return {
        p: folder.name
        for folder in sorted(DATASET.iterdir())
        for p in sorted(folder.glob("*.jpg"))[:per_class]
    }


def counted(provider: Provider) -> dict[str, int]:
    """Count the provider's model calls from now on (a benchmark's instrument)."""
    calls: dict[str, int] = defaultdict(int)
    for name in CALLS:
        real = getattr(provider, name)

        def wrapper(*args: Any, _name: str = name, _real: Any = real, **kw: Any) -> Any:
            calls[_name] += 1
            return _real(*args, **kw)

        setattr(provider, name, wrapper)
    return calls


def colored(hit: Hit, color: str) -> bool:
    return color in hit.keywords.get("color", [])


def is_red(hit: Hit) -> bool:
    return colored(hit, "red")


def share(hits: Sequence[Hit], test: Callable[[Hit], bool], k: int = 5) -> float:
    return sum(test(h) for h in hits[:k]) / k


def measure(settings: Settings, provider: Provider, photos: dict[Path, str], queries: int) -> None:
    worker = writing(settings, provider)
    report = worker.run(sorted(photos))
    print(f"indexed {report.indexed} of {len(photos)} photos ({len(set(photos.values()))} classes)")
    client = QueryClient(settings, store=worker.store, provider=provider)
    label = {read_source(p).id: c for p, c in photos.items()}
    by_class: dict[str, list[Path]] = defaultdict(list)
    for path in sorted(photos):
        by_class[photos[path]].append(path)
    examples = [p for paths in by_class.values() for p in paths[:queries]]
    color = {h.id: h.keywords.get("color", []) for h in client.browse(limit=10_000).records}
    calls = counted(provider)

    found: dict[str, list[float]] = defaultdict(list)
    alike_scores: list[float] = []
    unlike_scores: list[float] = []
    for path in examples:
        own = read_source(path).id
        same = lambda h, own=own: label.get(h.id) == label[own]  # noqa: E731
        before = sum(calls.values())
        alike = client.similar(str(path), limit=5)
        found["similar calls"].append(sum(calls.values()) - before)
        by_file = [h for h in client.image(path, limit=6) if h.id != own][:5]
        for h in client.similar(str(path), limit=20):
            (alike_scores if same(h) else unlike_scores).append(h.score)
        for name, hits in (("similar", alike), ("image", by_file)):
            found[f"{name} hit@5"].append(float(any(same(h) for h in hits[:5])))
            found[f"{name} precision@5"].append(share(hits, same))
        if "red" not in color[own]:
            red = client.image(path, limit=6, text="red")
            red = [h for h in red if h.id != own][:5]
            for name, hits in (("image", by_file), ("image --text red", red)):
                found[f"{name}: red"].append(share(hits, is_red))
                found[f"{name}: same garment"].append(share(hits, same))
            reds = sum(label[i] == label[own] and "red" in c for i, c in color.items())
            found["ceiling: red"].append(min(5, reds) / 5)
    print("more like this (top five):")
    for key in ("similar hit@5", "image hit@5", "similar precision@5", "image precision@5"):
        print(f"  {key:<28} {statistics.mean(found[key]):.3f}")
    print(f"  model calls made by similar   {sum(found['similar calls']):.0f}")
    print("  similar's top twenty: " + floors(alike_scores, unlike_scores, "garment"))
    print(f"a picture changed by words ({len(found['image: red'])} examples that are not red):")
    for key in (
        "image: red", "image --text red: red", "ceiling: red",
        "image: same garment", "image --text red: same garment",
    ):  # fmt: skip
        print(f"  {key:<32} {statistics.mean(found[key]):.3f}")

    black = {"without": 0, "with": 0}
    relevant: list[float] = []
    other: list[float] = []
    for cls in sorted(set(photos.values())):
        text = QUERY[cls]
        black["without"] += sum(colored(h, "black") for h in client.text(text, limit=10))
        kept = client.text(text, limit=10, exclude={"color": ["black"]})
        black["with"] += sum(colored(h, "black") for h in kept)
        for h in client.text(text, limit=20):
            (relevant if label.get(h.id) == cls else other).append(h.score)
    print(
        f"black records in class-naming text queries' top ten: {black['without']} without, "
        f"{black['with']} with exclude color=black"
    )
    floor = sorted(relevant)[len(relevant) // 10] if relevant else 0.0
    print("text queries' top twenty: " + floors(relevant, other, "class"))
    held = all(
        h.score >= floor
        for cls in set(photos.values())
        for h in client.text(QUERY[cls], limit=20, min_score=floor)
    )
    print(f"min_score held: {held}")


def floors(right: list[float], wrong: list[float], what: str) -> str:
    """The scores of right and wrong hits, and the floor that keeps nine in ten right ones."""
    if not right:
        return "no hits"
    floor = sorted(right)[len(right) // 10]
    others = f"{statistics.median(wrong):.3f}" if wrong else "-"
    cut = sum(s < floor for s in wrong) / max(1, len(wrong))
    return (
        f"same {what} median {statistics.median(right):.3f} (n={len(right)}), other median "
        f"{others} (n={len(wrong)}); the floor keeping 90% of same-{what} hits is "
        f"{floor:.3f}, and cuts {cut:.0%} of the others"
    )


def main(argv: Sequence[str] = ()) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--provider", choices=("local", "gemini"), default="local")
    parser.add_argument("--per-class", type=int, default=20)
    parser.add_argument("--queries", type=int, default=5, help="examples per class")
    parser.add_argument(
        "--words-weight", type=float, default=None, help="try another re-ranking weight"
    )
    args = parser.parse_args(argv)
    if args.words_weight is not None:
        from query import routes

        routes.WORDS_WEIGHT = args.words_weight
    if not DATASET.is_dir():
        print(f"no photos at {DATASET}; nothing measured")
        return
    photos = catalog(args.per_class)
    with tempfile.TemporaryDirectory() as tmp:
        if args.provider == "local":
            from indexer.providers.local import LocalProvider

            settings = load_settings(home=Path(tmp), google_api_key=None)
            measure(settings, LocalProvider(settings), photos, args.queries)
            return
        from indexer.providers.gemini import GeminiProvider

        with FakeGemini() as fake:
            os.environ["GEMINI_BASE_URL"] = fake.base_url
            settings = load_settings(
                home=Path(tmp), google_api_key=API_KEY, generation_rpm=100_000,
                embedding_rpm=100_000, batch_size=32,
            )  # fmt: skip
            colors = Vocabulary.load(settings.vocabulary_file).facets["color"]
            for path, cls in photos.items():
                image = prepare(read_source(path), settings.image_max_side)
                color = dominant_color(picture(image), colors)
                fake.by_image[hashlib.sha256(image.jpeg).hexdigest()] = {
                    "keywords": {"garment": [KEYWORD[cls]], "color": [color] if color else []},
                    "caption": f"A {color or ''} {cls}.",
                }
            before = len(fake.requests)
            measure(settings, GeminiProvider(settings), photos, args.queries)
            print(f"requests the fake answered while measuring: {len(fake.requests) - before}")


if __name__ == "__main__":
    main(sys.argv[1:])
