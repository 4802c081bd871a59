"""Tagging with a shop-sized vocabulary, against the fake Gemini server (no key, no network).

    python scripts/bench_vocabulary.py [--extra 560] [--per-class 20] [--json]

A vocabulary of a few hundred keywords is more than the API takes as a response schema's
enums, so it is asked for as free keywords and the answers are mapped onto the vocabulary
by the keyword mapper. This measures that recipe: the fake plays a truthful model that names
each photo's garment in its own words ("trousers", "hooded sweatshirt", "tee", ...; held to
enums, it spells the vocabulary's keyword), and garment accuracy is the share of photos whose
stored garment keyword is the one the vocabulary has for the label. The photos are
clothing-small/validation and clothing-extra (`--per-class` of each label); the vocabulary is
the default one with `--extra` more garment types (real ones, then numbered styles). The
fake's embeddings know a few synonyms and otherwise compare words, so the figure measures
the plumbing and the mapping rule, not Gemini's vision or its embeddings.

Prints keywords, schema kind, garment accuracy, the photos with no keyword fitting, and the
requests the API refused; with `--json` the last line is {"runs": [{"keywords", "schema",
"photos", "accuracy", "unmapped", "refused"}]}.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from indexer.config import load_settings  # noqa: E402
from indexer.images import prepare, read_source  # noqa: E402
from indexer.providers.gemini import GeminiProvider  # noqa: E402
from indexer.providers.gemini_requests import MAX_SCHEMA_KEYWORDS  # noqa: E402
from indexer.vocabulary import Vocabulary  # noqa: E402
from indexer.wiring import writing  # noqa: E402
from scripts.bench_gemini import DATA, KEYWORD, photos  # noqa: E402
from tests.fake_gemini import API_KEY, FakeGemini  # noqa: E402

# What a model says of each label when it may use its own words.
OWN_WORDS = {
    "dress": "midi dress", "hat": "bucket hat", "longsleeve": "long sleeve top",
    "outwear": "padded jacket", "pants": "trousers", "shirt": "button shirt",
    "shoes": "sneakers", "shorts": "denim shorts", "skirt": "pleated skirt", "t-shirt": "tee",
    "hoodie": "hooded hoodie", "blazer": "tailored blazer", "blouse": "silk blouse",
    "polo": "polo shirt", "undershirt": "tank top", "body": "bodysuit", "top": "crop top",
}  # fmt: skip
MORE_GARMENTS = [
    "cardigan", "parka", "trench coat", "kimono", "poncho", "cape", "tunic", "camisole",
    "jumpsuit", "overalls", "leggings", "joggers", "chinos", "culottes", "sarong", "kaftan",
    "waistcoat", "gilet", "anorak", "windbreaker", "bomber jacket", "peacoat", "duffle coat",
    "tuxedo", "suit", "romper", "pinafore", "dungarees", "bikini", "swimsuit", "sarong skirt",
    "maxi skirt", "mini skirt", "cargo pants", "sweatpants", "capri pants", "bermuda shorts",
    "henley", "turtleneck", "crewneck", "rugby shirt", "flannel shirt", "denim jacket",
    "leather jacket", "fleece", "vest", "scarf", "beanie", "beret", "fedora", "baseball cap",
    "sandals", "boots", "loafers", "heels", "slippers", "socks", "gloves", "belt", "tie",
]  # fmt: skip


def vocabulary(extra: int) -> Vocabulary:
    facets = {f: list(words) for f, words in Vocabulary.load().facets.items()}
    known = {w.casefold() for w in facets["garment"]}
    added = [w for w in MORE_GARMENTS if w not in known][:extra]
    added += [f"style {i:03d}" for i in range(extra - len(added))]
    facets["garment"] += added
    return Vocabulary.from_mapping(facets)


def measure(words: Vocabulary, per_class: int) -> dict[str, object]:
    catalog = {p: label for name in ("clothing-small", "clothing-extra") for p, label in (
        photos(name, per_class).items() if (DATA / name).is_dir() else ()
    )}  # fmt: skip
    free = words.size > MAX_SCHEMA_KEYWORDS
    with FakeGemini() as fake, tempfile.TemporaryDirectory() as tmp:
        os.environ["GEMINI_BASE_URL"] = fake.base_url
        vocabulary_file = Path(tmp) / "vocabulary.toml"
        vocabulary_file.write_text(
            "".join(f"{f} = {json.dumps(list(w))}\n" for f, w in words.facets.items())
        )
        settings = load_settings(
            home=Path(tmp), google_api_key=API_KEY, generation_rpm=100_000,
            embedding_rpm=100_000, batch_size=32, vocabulary_file=vocabulary_file,
        )  # fmt: skip
        expected: dict[str, str] = {}
        for path, label in catalog.items():
            source = read_source(path)
            sent = prepare(source, settings.image_max_side).jpeg
            said = OWN_WORDS[label] if free else KEYWORD[label]
            fake.by_image[hashlib.sha256(sent).hexdigest()] = {
                "keywords": {"garment": [said]},
                "caption": f"A {said}.",
            }
            expected[source.id] = KEYWORD[label]
        worker = writing(settings, GeminiProvider(settings))
        report = worker.run(sorted(catalog))
        stored = {r.id: r.keywords.get("garment", []) for r in worker.store.records()}
        right = sum(1 for rid, want in expected.items() if stored.get(rid) == [want])
        refused = sum(
            1
            for r in fake.requests
            if r.endpoint == "generateContent" and not r.answered and r.digest
        )
        return {
            "keywords": words.size,
            "schema": "free keywords, mapped" if free else "enums",
            "photos": len(expected),
            "accuracy": round(right / max(len(expected), 1), 3),
            "unmapped": report.failed,
            "refused": refused,
        }


def main(argv: Sequence[str] = ()) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--extra", type=int, default=560, help="garment types added")
    parser.add_argument("--per-class", type=int, default=20, help="photos per label")
    parser.add_argument("--json", action="store_true", help="end with one JSON line")
    args = parser.parse_args(argv)
    if not DATA.is_dir():
        print(f"no datasets at {DATA}; nothing measured")
        return
    runs = [measure(vocabulary(0), args.per_class), measure(vocabulary(args.extra), args.per_class)]
    for run in runs:
        print(
            f"{run['keywords']} keywords ({run['schema']}): garment accuracy "
            f"{run['accuracy']:.1%} of {run['photos']} photos; {run['unmapped']} with no "
            f"keyword fitting; {run['refused']} requests refused"
        )
    if args.json:
        print(json.dumps({"runs": runs}))


if __name__ == "__main__":
    main(sys.argv[1:])
