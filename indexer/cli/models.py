"""Commands about the models: `reembed` (move a catalog to another embedding model) and
`train-tagger` (train keyword heads on labelled folders).
"""

from __future__ import annotations

from contextlib import ExitStack
from pathlib import Path
from typing import TYPE_CHECKING

import typer
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
)

from indexer.console import (
    ReadableCommand,
    err,
    line,
    out,
    reported_errors,
    setup_logging,
)

if TYPE_CHECKING:
    pass
from indexer.cli.app import VerboseOpt, app
from indexer.wiring import chosen_provider, enricher_for


@app.command(cls=ReadableCommand)
def reembed(
    provider: str | None = typer.Option(
        None,
        "--provider",
        metavar="gemini|local",
        help="Model provider whose embeddings to move to (default as for run).",
    ),
    as_json: bool = typer.Option(False, "--json", help="Print a JSON summary."),
    verbose: bool = VerboseOpt,
) -> None:
    """Move the collection to the configured embedding model, with no generation call.

    Stored keywords and captions are embedded again, and the pictures for a multimodal
    model. The old vectors answer queries until every record has new ones; an interrupted
    run (Ctrl-C, a crash) resumes where it stopped when run again.
    """
    setup_logging(verbose)
    import json
    import signal
    import threading

    from indexer.config import load_settings
    from indexer.reembed import ReembedReport
    from indexer.reembed import reembed as run_reembed
    from indexer.store import ImageStore

    stop = threading.Event()
    with reported_errors(), ExitStack() as resources:
        settings = load_settings()
        store = resources.enter_context(ImageStore.open(settings, exclusive=True))
        model = chosen_provider(provider, settings)
        resources.callback(model.close)
        enricher = enricher_for(settings, model)
        spec, image_spec = enricher.spec, enricher.image_spec
        if store.spec == enricher.spec and store.image_spec == enricher.image_spec:
            err.print(line(f"collection {store.name!r} is already built with {store.spec}"))
            return
        err.print(line(f"re-embedding {store.name!r}: {store.spec} -> {enricher.spec}"))
        progress = Progress(
            SpinnerColumn(),
            TextColumn("[bold]re-embedding"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=err,
        )
        task = progress.add_task("reembed", total=store.count())

        def show(r: ReembedReport) -> None:
            progress.update(task, completed=r.reembedded + r.resumed)

        def request_stop(signum: int, _frame: object) -> None:
            stop.set()

        previous = signal.signal(signal.SIGINT, request_stop)
        try:
            with progress:
                report = run_reembed(
                    store,
                    enricher,
                    settings.image_max_side,
                    settings.max_file_bytes,
                    page=max(settings.batch_size, 1),
                    on_progress=show,
                    stop=stop,
                )
        finally:
            signal.signal(signal.SIGINT, previous)
        usage = model.usage.as_dict()
    summary = {
        "collection": store.name,
        "from": str(report.source),
        "to": str(report.target),
        "records": report.records,
        "reembedded": report.reembedded,
        "resumed": report.resumed,
        "pictures": report.pictures,
        "pictures_missing": report.pictures_missing,
        "switched": report.switched,
        "generation_requests": usage["generation_requests"],
        "embedding_requests": usage["embedding_requests"],
        "seconds": round(report.seconds, 1),
    }
    if as_json:
        typer.echo(json.dumps(summary))
    else:
        out.print(
            line(
                f"re-embedded {report.reembedded} of {report.records} records "
                f"({report.resumed} from an earlier run), {report.pictures} pictures "
                f"({report.pictures_missing} files missing or changed), "
                f"{usage['embedding_requests']} embedding requests, no generation, "
                f"in {report.seconds:.1f}s"
            )
        )
    if not report.switched:
        err.print(line("interrupted; run `indexer reembed` again to continue"))
        raise typer.Exit(130)
    err.print(line(f"collection {store.name!r} now uses {report.target}"))
    if settings.partition_facets:
        # The keyword partitions held the old vectors: build them in the new space now, so
        # that filtered queries stay fast without waiting for the next `indexer run`.
        with reported_errors():
            ImageStore.open(settings, write=True, spec=spec, image_spec=image_spec).close()


@app.command("train-tagger", cls=ReadableCommand)
def train_tagger(
    folder: Path = typer.Argument(..., help="Photos sorted as FOLDER/<facet>/<keyword>/*.jpg."),
    verbose: bool = VerboseOpt,
) -> None:
    """Teach the offline provider your taxonomy: one classifier head per facet folder.

    Keywords must come from the vocabulary. Heads are saved under $INDEXER_HOME/heads and
    replace the shipped ones for their facet on the next `indexer run --provider local`.
    """
    setup_logging(verbose)
    from indexer.config import load_settings
    from indexer.tagger import train_heads
    from indexer.vocabulary import Vocabulary

    with reported_errors():
        settings = load_settings()
        from indexer.vision import ImageEncoder

        skipped: list[tuple[Path, str]] = []
        reports = train_heads(
            folder,
            Vocabulary.load(settings.vocabulary_file),
            settings.home / "heads",
            ImageEncoder(settings.models_dir),
            settings.max_file_bytes,
            skipped,
            settings.image_max_side,
        )
    for path, reason in skipped:
        err.print(line(f"skipped {path}: {reason}"))
    for r in reports:
        counts = ", ".join(f"{k} {n}" for k, n in r.counts.items())
        accuracy = (
            "n/a (fewer than 5 photos of a keyword)"
            if r.holdout_accuracy is None
            else (f"{r.holdout_accuracy:.3f}")
        )
        out.print(line(f"{r.facet}: {counts}; holdout accuracy {accuracy}; saved {r.path}"))
