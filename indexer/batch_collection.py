"""What finished batch jobs give, written as the online path writes its own: a description
job's answers tagged (then embedded by a job of their own), an embedding job's vectors made
into records. Only images not indexed meanwhile are written, and only while their files
still hold the bytes that were described."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from indexer.enrich import Tagged
from indexer.errors import ProviderError
from indexer.images import PreparedImage, reread
from indexer.pipeline import BatchResult, Indexer, RunReport, batched
from indexer.records import Description, Failure

if TYPE_CHECKING:
    from indexer.store.batches import BatchEntry

CHANGED = "the file changed or vanished before its batch answer was collected"


def held(entry: BatchEntry) -> list[Tagged]:
    """The tagged answers an embedding job's entry keeps, in the order they were sent."""
    return [Tagged.from_json(image_id, dict(a)) for image_id, a in entry.answers.items()]


class Collector:
    def __init__(self, indexer: Indexer) -> None:
        self.indexer = indexer
        self.enricher = indexer.enricher

    def tagged(
        self,
        entry: BatchEntry,
        answers: Mapping[str, Description | ProviderError],
        report: RunReport,
    ) -> tuple[list[Tagged], list[PreparedImage]]:
        """A description job's answers for the images not indexed meanwhile, mapped into the
        vocabulary, with their images as read now. The images that cannot be written (the
        file changed, no answer, no keyword fits) are recorded as failed."""
        known = self.indexer.store.known_paths(list(entry.images))
        images: list[PreparedImage] = []
        failures: list[Failure] = []
        for image_id, path in entry.images.items():
            if image_id in known:
                continue
            image = self.image(image_id, path)
            if image is None:
                failures.append(Failure(image_id, path, CHANGED))
            else:
                images.append(image)
        missing = ProviderError("the batch job returned no answer for this image")
        tagged, unusable = self.enricher.tag(images, [answers.get(i.id, missing) for i in images])
        self.indexer.fail(failures + unusable, report)
        by_id = {image.id: image for image in images}
        return tagged, [by_id[t.id] for t in tagged]

    def reread(
        self, tagged: Sequence[Tagged], report: RunReport
    ) -> tuple[list[Tagged], list[PreparedImage]]:
        """The answers whose files still hold the bytes described, with their images; the
        others are recorded as failed."""
        kept: list[Tagged] = []
        images: list[PreparedImage] = []
        failures: list[Failure] = []
        for t in tagged:
            image = self.image(t.id, t.path)
            if image is None:
                failures.append(Failure(t.id, t.path, CHANGED))
            else:
                kept.append(t)
                images.append(image)
        self.indexer.fail(failures, report)
        return kept, images

    def write(
        self, entry: BatchEntry, vectors: Sequence[list[float]] | None, report: RunReport
    ) -> None:
        """Write the records of an embedding job's answers from its `vectors` (the texts',
        then the pictures' when it embedded them), or, with None, from vectors asked for
        online (the job failed for good: its descriptions are paid for, its embeddings cheap)."""
        answers = held(entry)
        order = {t.id: k for k, t in enumerate(answers)}
        texts = list(vectors[: len(answers)]) if vectors is not None else None
        pictures = list(vectors[len(answers) :]) if vectors is not None and entry.pictures else []
        known = self.indexer.store.known_paths(list(order))
        size = self.indexer.settings.batch_size
        for chunk in batched([t for t in answers if t.id not in known], size):
            kept, images = self.reread(chunk, report)
            if not kept:
                continue
            if texts is None:
                text_vectors = self.enricher.provider.embed_documents([t.document for t in kept])
            else:
                text_vectors = [texts[order[t.id]] for t in kept]
            if pictures and self.enricher.remote_pictures:
                picture_vectors: list[list[float] | None] = [pictures[order[t.id]] for t in kept]
            else:
                picture_vectors = self.enricher.picture_vectors(images)
            records = self.enricher.records(kept, images, text_vectors, picture_vectors)
            self.indexer.write(BatchResult(records, []), report)

    def image(self, image_id: str, path: str) -> PreparedImage | None:
        """The image at `path` if it still holds the bytes of `image_id`."""
        settings = self.indexer.settings
        return reread(Path(path), image_id, settings.image_max_side, settings.max_file_bytes)
