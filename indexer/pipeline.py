"""The ingestion worker: files -> keywords and caption -> embedding -> Chroma.

Files are streamed in batches. The main thread reads and hashes them, skips what is already
indexed, and writes results; each remaining batch is decoded, described, corrected and
embedded on a worker thread, two batches at a time, so that one batch's embedding and
write overlap the next one's generation calls.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from itertools import islice
from pathlib import Path

from indexer.config import Settings
from indexer.errors import ImageError, ProviderError
from indexer.images import PreparedImage, SourceImage, content_id, discover, prepare, read_source
from indexer.keywords import EmbeddingCache, KeywordMapper
from indexer.providers.base import Description, Provider
from indexer.store import Failure, ImageRecord, ImageStore
from indexer.vision import image_embedder
from indexer.vocabulary import Keywords, Vocabulary

log = logging.getLogger(__name__)

BATCHES_IN_FLIGHT = 2


@dataclass
class RunReport:
    indexed: int = 0
    skipped: int = 0  # already indexed at the same path
    moved: int = 0  # already indexed; only its path was updated
    duplicates: int = 0  # same bytes as another file of this run
    failures: list[Failure] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def failed(self) -> int:
        return len(self.failures)

    @property
    def seen(self) -> int:
        return self.indexed + self.skipped + self.moved + self.duplicates + self.failed


ProgressFn = Callable[[RunReport], None]


@dataclass
class _BatchResult:
    records: list[ImageRecord]
    failures: list[Failure]


def document_text(keywords: Keywords, caption: str) -> str:
    """The text that is embedded for an image: "keywords. caption", as in the notebook."""
    words = [w for facet_words in keywords.values() for w in facet_words]
    return f"{', '.join(words)}. {caption}" if words else caption


def path_failure_id(path: Path) -> str:
    """Failure id for a file whose bytes could not be read, so it has no content id."""
    return "path-" + content_id(str(path).encode("utf-8", "surrogateescape"))


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__


def _batched(items: Iterable[Path], size: int) -> Iterator[list[Path]]:
    it = iter(items)
    while chunk := list(islice(it, size)):
        yield chunk


class Indexer:
    def __init__(
        self,
        settings: Settings,
        provider: Provider,
        store: ImageStore,
        vocabulary: Vocabulary,
    ) -> None:
        self.settings = settings
        self.provider = provider
        self.store = store
        self.vocabulary = vocabulary
        self.mapper = keyword_mapper(settings, provider, vocabulary)
        self.pictures = image_embedder(provider)

    def run(self, paths: Sequence[Path], on_progress: ProgressFn | None = None) -> RunReport:
        started = time.monotonic()
        report = RunReport()
        notify = on_progress or (lambda _report: None)
        self.store.prepare_for_writing(
            self.provider.embedding_spec, self.pictures[0] if self.pictures else None
        )
        seen: set[str] = set()
        in_flight: deque[Future[_BatchResult]] = deque()
        pool = ThreadPoolExecutor(BATCHES_IN_FLIGHT, thread_name_prefix="batch")
        try:
            for chunk in _batched(discover(paths), self.settings.batch_size):
                pending = self._triage(chunk, seen, report)
                notify(report)
                if pending:
                    in_flight.append(pool.submit(self._process, pending))
                while len(in_flight) >= BATCHES_IN_FLIGHT:
                    self._write(in_flight.popleft().result(), report)
                    notify(report)
            while in_flight:
                self._write(in_flight.popleft().result(), report)
                notify(report)
        finally:
            for future in in_flight:
                future.cancel()
            pool.shutdown(wait=True, cancel_futures=True)
            report.seconds = time.monotonic() - started
        return report

    def _triage(self, chunk: list[Path], seen: set[str], report: RunReport) -> list[SourceImage]:
        """Read and hash files; settle the ones already indexed; return the rest."""
        sources: list[SourceImage] = []
        failures: list[Failure] = []
        for path in chunk:
            try:
                source = read_source(path)
            except ImageError as exc:
                failures.append(Failure(path_failure_id(path), str(path), _one_line(exc)))
                continue
            if source.id in seen:
                report.duplicates += 1
                continue
            seen.add(source.id)
            sources.append(source)
        known = self.store.known_paths([s.id for s in sources])
        moved = {s.id: str(s.path) for s in sources if s.id in known and known[s.id] != str(s.path)}
        self.store.update_paths(moved)
        report.moved += len(moved)
        report.skipped += sum(1 for s in sources if s.id in known) - len(moved)
        self._fail(failures, report)
        return [s for s in sources if s.id not in known]

    def _process(self, batch: list[SourceImage]) -> _BatchResult:
        """Decode, describe, correct keywords and embed one batch (runs on a worker thread)."""
        failures: list[Failure] = []
        prepared = []
        for source in batch:
            try:
                prepared.append(prepare(source, self.settings.image_max_side))
            except ImageError as exc:
                failures.append(Failure(source.id, str(source.path), _one_line(exc)))
        answers = self.provider.describe(prepared, self.vocabulary) if prepared else []
        ok: list[tuple[PreparedImage, Description]] = []
        for image, answer in zip(prepared, answers, strict=True):
            if isinstance(answer, Description):
                ok.append((image, answer))
            else:
                failures.append(Failure(image.id, str(image.path), _one_line(answer)))
        if not ok:
            return _BatchResult([], failures)
        try:
            mapped = self.mapper.map_many([d.keywords for _, d in ok])
            texts = [
                document_text(m.keywords, d.caption) for m, (_, d) in zip(mapped, ok, strict=True)
            ]
            vectors = self.provider.embed_documents(texts)
            pictures: list[list[float] | None] = (
                list(self.pictures[1]([img for img, _ in ok]))
                if self.pictures
                else [None] * len(ok)
            )
        except ProviderError as exc:
            reason = f"embedding failed: {_one_line(exc)}"
            failures += [Failure(img.id, str(img.path), reason) for img, _ in ok]
            return _BatchResult([], failures)
        records = [
            ImageRecord(
                id=image.id,
                path=str(image.path),
                caption=answer.caption,
                keywords=m.keywords,
                raw_keywords=answer.keywords,
                corrections=m.corrections,
                embedding=vector,
                model_ids={"provider": self.provider.name, **self.provider.model_ids},
                vocabulary=self.vocabulary.fingerprint,
                image_embedding=picture,
            )
            for (image, answer), m, vector, picture in zip(
                ok, mapped, vectors, pictures, strict=True
            )
        ]
        return _BatchResult(records, failures)

    def _write(self, result: _BatchResult, report: RunReport) -> None:
        self.store.upsert(result.records)
        self.store.clear_failures([r.id for r in result.records], [r.path for r in result.records])
        report.indexed += len(result.records)
        self._fail(result.failures, report)

    def _fail(self, failures: list[Failure], report: RunReport) -> None:
        for failure in failures:
            log.warning("failed: %s: %s", failure.path, failure.reason)
        self.store.record_failures(failures)
        report.failures.extend(failures)


def keyword_mapper(settings: Settings, provider: Provider, vocabulary: Vocabulary) -> KeywordMapper:
    spec = provider.embedding_spec
    cache = EmbeddingCache(settings.cache_dir, f"{spec.provider}-{spec.model}-{spec.dim}-words")
    return KeywordMapper(vocabulary, provider.embed_words, settings.keyword_threshold, cache)
