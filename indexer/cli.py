"""`indexer`: index folders of clothing photos into the Chroma collection."""

from __future__ import annotations

import contextlib
import functools
import uuid
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
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
    EXIT_FAILED_IMAGES,
    EXIT_UNSOUND,
    ReadableCommand,
    ReadableGroup,
    err,
    line,
    neutralise,
    note,
    out,
    print_json,
    reported_errors,
    setup_logging,
    version_option,
)
from indexer.errors import ConfigError, StoreError

if TYPE_CHECKING:
    from indexer.config import Settings
    from indexer.pipeline import Indexer, Shard
    from indexer.providers.base import Provider
    from indexer.records import Failure, Usage

app = typer.Typer(
    help="Tag, caption and embed clothing photos into a Chroma collection.",
    no_args_is_help=True,
    add_completion=False,
    cls=ReadableGroup,
)
app.callback()(version_option)


def chosen_provider(name: str | None, settings: Settings) -> Provider:
    """The named provider, or Gemini when a key is set and else the offline one (said so)."""
    from indexer import providers

    if name is None:
        name = providers.default_name(settings)
        if name != "gemini":
            err.print(line(f"no GOOGLE_API_KEY set: using the offline {name!r} provider"))
        else:
            err.print(line(f"using Gemini (an API key is set): {settings.generation_model}"))
    if name == "gemini":
        note(settings.endpoint_notice())  # the key and photos go elsewhere than Google
    return providers.create(name, settings)


@contextmanager
def indexing(settings: Settings, provider: str | None) -> Iterator[Indexer]:
    """The ingestion worker, wired: provider, enricher, and the store opened for writing in
    the enricher's vector spaces. Closes the provider and releases the store afterwards."""
    from indexer.enrich import Enricher
    from indexer.pipeline import Indexer
    from indexer.store import ImageStore
    from indexer.vocabulary import Vocabulary

    vocabulary = Vocabulary.load(settings.vocabulary_file)
    model = chosen_provider(provider, settings)
    try:
        enricher = Enricher.create(settings, model, vocabulary)
        with ImageStore.open(
            settings, write=True, spec=enricher.spec, image_spec=enricher.image_spec
        ) as store:
            try:
                yield Indexer(settings, enricher, store)
            finally:
                # What the run spent counts even when it was interrupted.
                with contextlib.suppress(StoreError):
                    store.usage.record(uuid.uuid4().hex, model.usage)
    finally:
        model.close()


def usage_line(usage: Usage, images: int) -> str:
    """`tokens: …` for a run's summary: totals, per image, and requests."""
    per_image = f", {usage.tokens / images:,.0f} per image" if images else ""
    return (
        f"tokens: {usage.tokens:,} (prompt {usage.prompt_tokens:,}, output "
        f"{usage.output_tokens:,}, thinking {usage.thinking_tokens:,}){per_image}; "
        f"{usage.generation_requests:,} generation and {usage.embedding_requests:,} "
        "embedding requests"
    )


VerboseOpt = typer.Option(False, "--verbose", "-v", help="Log retries and each failure.")


@app.command(cls=ReadableCommand)
def run(
    paths: list[Path] = typer.Argument(..., help="Image files or folders (searched recursively)."),
    provider: str | None = typer.Option(
        None,
        "--provider",
        metavar="gemini|local",
        help="Model provider: gemini or local. Default: gemini when an API key is set, else local.",
    ),
    shard: str | None = typer.Option(
        None,
        "--shard",
        metavar="K/N",
        help="Be worker K of N (1-based): index only the images whose content hash is this "
        "worker's share. Run N workers against one Chroma server (CHROMA_HOST).",
    ),
    batch: bool = typer.Option(
        False,
        "--batch",
        help="Describe images through the Gemini Batch API: half the price, answers within "
        "24 hours. Collects open jobs first; a re-run never pays twice.",
    ),
    no_wait: bool = typer.Option(
        False, "--no-wait", help="With --batch: submit and return; a later --batch run collects."
    ),
    verbose: bool = VerboseOpt,
) -> None:
    """Index images: keywords, caption and embedding of each, upserted into Chroma.

    Images already indexed are skipped (a moved file only gets its new path); images that
    fail are recorded with their reason and retried on the next run. A killed run loses
    nothing: run the same command again to finish.
    """
    setup_logging(verbose)
    from indexer.config import load_settings
    from indexer.images import discover
    from indexer.pipeline import RunReport, Shard

    with reported_errors(), ExitStack() as resources:
        share = Shard.parse(shard) if shard else None
        settings = load_settings()
        if share and not settings.uses_server:
            note(
                "--shard with the embedded store: run the workers one after another, "
                "or share a Chroma server (CHROMA_HOST) to run them at once"
            )
        if no_wait and not batch:
            raise ConfigError("--no-wait goes with --batch")
        total = sum(1 for _ in discover(paths))
        indexer = resources.enter_context(indexing(settings, provider))
        store = indexer.store
        if indexer.enricher.provider.name == "local":
            err.print(line("loading models..."))
            indexer.enricher.provider.warm_up()
        if batch:
            run_batch(indexer, paths, share, wait=not no_wait, poll=settings.batch_poll_seconds)
            return
        progress = Progress(
            SpinnerColumn(),
            TextColumn("[bold]indexing"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[counts]}"),
            TextColumn("{task.fields[rate]}"),
            TimeElapsedColumn(),
            console=err,
            transient=False,
        )
        task = progress.add_task("index", total=total, counts="", rate="")

        def show(r: RunReport) -> None:
            elapsed = progress.tasks[0].elapsed or 0.0
            rate = f"{r.indexed / elapsed:.1f} img/s" if elapsed > 0 else ""
            skipped = r.skipped + r.moved + r.duplicates
            counts = f"indexed {r.indexed}  skipped {skipped}  failed {r.failed}"
            if share:
                counts += f"  other shards {r.other_shards}"
            progress.update(task, completed=r.seen, counts=counts, rate=rate)

        try:
            with progress:
                report = indexer.run(paths, on_progress=show, shard=share)
        except KeyboardInterrupt:
            # Finished batches are written; the rest is simply not indexed yet.
            err.print(line("interrupted; run the same command again to continue"))
            raise typer.Exit(130) from None

    out.print(
        line(
            f"indexed {report.indexed}, already indexed {report.skipped}, moved {report.moved}, "
            f"duplicates {report.duplicates}, failed {report.failed}"
            + (f", left to other shards {report.other_shards} (shard {share})" if share else "")
            + (
                f", waiting in open batch jobs {report.in_batch_jobs}"
                if report.in_batch_jobs
                else ""
            )
            + f" in {report.seconds:.1f}s into collection {store.name!r} at {store.location}"
        )
    )
    usage = indexer.enricher.provider.usage
    if usage.generation_requests or usage.embedding_requests:
        out.print(line(usage_line(usage, report.indexed)))
    if report.failures:
        err.print(line((f"{report.failed} image(s) failed", "red"), " (retried on the next run):"))
        for failure in report.failures:
            err.print(line(f"  {failure.path}: {failure.reason}"))
        raise typer.Exit(EXIT_FAILED_IMAGES)


def run_batch(
    indexer: Indexer, paths: list[Path], share: Shard | None, wait: bool, poll: float
) -> None:
    """`indexer run --batch`: submit, then (unless --no-wait) wait for and write the answers."""
    import time

    from indexer.batch import BatchIndexer, BatchReport
    from indexer.pipeline import RunReport

    batches = BatchIndexer(indexer, poll_seconds=poll)
    report, batch = RunReport(), BatchReport()
    started = time.monotonic()
    batches.submit(paths, report, batch, share)
    err.print(
        line(
            f"batch: submitted {batch.submitted_images} images in {len(batch.submitted_jobs)} "
            f"job(s); {batch.already_in_jobs} already in open jobs; "
            f"{batch.adopted_jobs} unrecorded job(s) adopted"
            + (
                f"; {batch.unconfirmed_jobs} create(s) unanswered, looked for by name"
                if batch.unconfirmed_jobs
                else ""
            )
        )
    )
    if not wait:
        for name in batch.submitted_jobs:
            out.print(line(name))
        err.print(line("collect the answers later with `indexer run --batch` on the same folders"))
        return

    def show(r: RunReport, b: BatchReport) -> None:
        states = ", ".join(f"{n} {s}" for s, n in sorted(b.states.items())) or "none open"
        err.print(
            line(
                f"batch jobs: {states}; collected {b.collected_jobs}, answers {b.answers}, "
                f"indexed {r.indexed}, failed {r.failed}; {time.monotonic() - started:.0f}s"
            )
        )

    try:
        batches.wait(report, batch, notify=show)
    except KeyboardInterrupt:
        err.print(
            line(
                "interrupted: the batch jobs keep running at Google; collect their answers "
                "with `indexer run --batch` on the same folders (nothing is submitted twice)"
            )
        )
        raise typer.Exit(130) from None
    out.print(
        line(
            f"indexed {report.indexed}, already indexed {report.skipped}, moved {report.moved}, "
            f"failed {report.failed} through {batch.collected_jobs} batch job(s) "
            f"({batch.resubmitted_jobs} resubmitted) in {time.monotonic() - started:.1f}s"
        )
    )
    usage = indexer.enricher.provider.usage
    if usage.generation_requests or usage.embedding_requests:
        out.print(line(usage_line(usage, report.indexed) + " (batch answers bill at half price)"))
    if report.failures:
        err.print(line((f"{report.failed} image(s) failed", "red"), " (retried on the next run):"))
        for failure in report.failures:
            err.print(line(f"  {failure.path}: {failure.reason}"))
        raise typer.Exit(EXIT_FAILED_IMAGES)


@app.command(cls=ReadableCommand)
def status(
    paths: list[Path] | None = typer.Argument(
        None, help="Folders to count pending images in. Default: every folder ever indexed."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object."),
    verbose: bool = VerboseOpt,
) -> None:
    """How many images are indexed, pending and failed, and each failed file with its reason."""
    setup_logging(verbose)
    from indexer.config import load_settings
    from indexer.files import absolute
    from indexer.pipeline import count_pending
    from indexer.store import ImageStore

    with reported_errors():
        settings = load_settings()
        store = ImageStore.open(settings)
        failures = store.failures.all()
        roots = [absolute(p) for p in paths] if paths else [Path(r) for r in store.roots.all()]
        present = [r for r in roots if r.exists()]
        pending = count_pending(store, present, {f.path for f in failures}, settings.max_file_bytes)
        indexed = store.count()
        usage, runs = store.usage.totals()
        jobs = store.batches.entries()
    if as_json:
        print_json(
            {
                "collection": store.name,
                "location": store.location,
                "indexed": indexed,
                "pending": pending,
                "failed": len(failures),
                "roots": [str(r) for r in roots],
                "failures": [{"path": f.path, "reason": f.reason, "at": f.at} for f in failures],
                "usage": {**usage.as_dict(), "runs": runs},
                "batches": [
                    {
                        "job": j.job,
                        "display_name": j.display_name,
                        "state": j.state,
                        "images": len(j.images),
                        "bytes": j.size,
                        "created_at": j.created_at,
                    }
                    for j in jobs
                ],
            }
        )
        return
    out.print(
        line(
            f"collection {store.name!r} at {store.location}: {indexed} indexed, "
            f"{pending} pending, {len(failures)} failed; built with {store.spec}"
        )
    )
    if runs:
        out.print(line(f"spent over {runs} run(s): {usage_line(usage, indexed)}"))
    for j in jobs:
        out.print(
            line(
                f"  batch job {j.job or '(being created)'}: {j.state}, {len(j.images)} images, "
                f"{j.size / 2**20:.1f} MiB, since {j.created_at}"
            )
        )
    for root in roots:
        if root not in present:
            err.print(line(f"folder {root} no longer exists; not counted"))
    show_failures(failures)


# Beyond these, failures are summed up: a folder of 30,000 broken files is one line a reason.
SHOWN_PER_REASON = 3
SHOWN_REASONS = 20


def show_failures(failures: list[Failure]) -> None:
    """Each failed file with its reason; grouped by reason where one reason has many."""
    by_reason: dict[str, list[str]] = {}
    for f in failures:
        by_reason.setdefault(f.reason, []).append(f.path)
    ranked = sorted(by_reason.items(), key=lambda item: -len(item[1]))
    for reason, paths in ranked[:SHOWN_REASONS]:
        if len(paths) <= SHOWN_PER_REASON:
            for path in paths:
                out.print(line(f"  {path}: {reason}"))
            continue
        sample = ", ".join(paths[:SHOWN_PER_REASON])
        out.print(line(f"  {len(paths)} files: {reason} (e.g. {sample}, ...)"))
    hidden = sum(len(p) for _, p in ranked[SHOWN_REASONS:])
    if hidden:
        out.print(
            line(f"  {hidden} more files failed for {len(ranked) - SHOWN_REASONS} other reasons")
        )
    if len(failures) > SHOWN_PER_REASON and len(by_reason) < len(failures):
        out.print(line("  (`indexer status --json` lists every failed file)"))


@app.command(cls=ReadableCommand)
def watch(
    folders: list[Path] = typer.Argument(..., help="Folders to keep indexed."),
    provider: str | None = typer.Option(
        None,
        "--provider",
        metavar="gemini|local",
        help="Model provider: gemini or local (default as for `run`).",
    ),
    settle: float = typer.Option(
        1.0, "--settle", min=0.0, help="Seconds a file must be quiet before it is read."
    ),
    verbose: bool = VerboseOpt,
) -> None:
    """Index new and changed images as they appear and forget deleted ones, until stopped.

    Starts by bringing the collection in step with the folders. SIGINT or SIGTERM finishes
    the images in hand, writes them, and exits cleanly.
    """
    setup_logging(verbose)
    import signal
    import threading

    from indexer.config import load_settings
    from indexer.watcher import Watcher, WatchReport

    stop = threading.Event()

    def request_stop(signum: int, _frame: object) -> None:
        name = signal.Signals(signum).name
        err.print(line(f"{name}: finishing the images in hand, then stopping"))
        stop.set()

    with reported_errors():
        for folder in folders:
            if not folder.is_dir():
                raise ConfigError(f"{folder} is not a folder")
        settings = load_settings()

        def show(what: str, r: WatchReport) -> None:
            if what == "ready":
                err.print(line(f"watching {', '.join(map(str, folders))} (Ctrl-C to stop)"))
            err.print(line(f"indexed {r.indexed}, removed {r.removed}, failed {r.failed}"))

        with indexing(settings, provider) as indexer:
            watcher = Watcher(indexer, folders, settle, on_change=show)
            previous = {s: signal.signal(s, request_stop) for s in (signal.SIGINT, signal.SIGTERM)}
            try:
                report = watcher.run(stop)
            finally:
                for sig, handler in previous.items():
                    signal.signal(sig, handler)
    out.print(
        line(f"stopped: indexed {report.indexed}, removed {report.removed}, failed {report.failed}")
    )


@app.command(cls=ReadableCommand)
def export(
    fmt: str | None = typer.Option(
        None,
        "--format",
        "-f",
        metavar="jsonl|csv|parquet",
        help="jsonl, csv or parquet: every record as one row.",
    ),
    output: Path | None = typer.Option(
        None, "--output", "-o", help="File to write (jsonl and csv default to standard output)."
    ),
    vectors: bool = typer.Option(False, "--vectors", help="Include the embedding vectors."),
    xmp: bool = typer.Option(
        False, "--xmp", help="Write an XMP sidecar (IMAGE.jpg.xmp) per image: keywords, caption."
    ),
    xmp_dir: Path | None = typer.Option(
        None, "--xmp-dir", help="Put the sidecars under this folder instead of beside the images."
    ),
    verbose: bool = VerboseOpt,
) -> None:
    """Export the collection's records for other tools, or as XMP sidecars for photo managers.

    Images are never modified; a sidecar written by another program is left alone.
    """
    setup_logging(verbose)
    import os
    import sys

    from indexer import export as exports
    from indexer.config import load_settings
    from indexer.store import ImageStore
    from indexer.vocabulary import Vocabulary

    with reported_errors():
        if fmt is None and not xmp and xmp_dir is None:
            raise ConfigError("say what to export: --format jsonl|csv|parquet and/or --xmp")
        if fmt is not None and fmt not in exports.FORMATS:
            raise ConfigError(f"--format must be one of {', '.join(exports.FORMATS)}; got {fmt!r}")
        if fmt == "parquet" and output is None:
            raise ConfigError("--format parquet needs --output FILE")
        settings = load_settings()
        facets = list(Vocabulary.load(settings.vocabulary_file).facets)
        store = ImageStore.open(settings)
        if fmt == "parquet":
            assert output is not None
            count = exports.write_parquet(store.records(vectors), output, facets, vectors)
            err.print(line(f"exported {count} records to {output}"))
        elif fmt is not None:
            writer = exports.write_jsonl if fmt == "jsonl" else exports.write_csv
            if output is None:
                if fmt == "csv" and sys.stdout.isatty():  # read by a person: show, not run
                    writer = functools.partial(exports.write_csv, cell=neutralise)
                try:
                    count = writer(store.records(vectors), sys.stdout, facets, vectors)
                    sys.stdout.flush()
                except BrokenPipeError:
                    # `indexer export ... | head`: the reader has what it wanted. Point stdout
                    # at /dev/null so that the interpreter's final flush stays quiet too.
                    os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
                    raise typer.Exit(0) from None
            else:
                with output.open("w", encoding="utf-8", newline="") as fh:
                    count = writer(store.records(vectors), fh, facets, vectors)
            err.print(line(f"exported {count} records to {output or 'standard output'}"))
        if xmp or xmp_dir is not None:
            roots = [Path(r) for r in store.roots.all()]
            report = exports.write_sidecars(store.records(), xmp_dir, roots)
            err.print(line(f"wrote {len(report.written)} XMP sidecars"))
            for sidecar, reason in report.skipped:
                err.print(line(f"  skipped {sidecar}: {reason}"))


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
    from indexer.enrich import Enricher
    from indexer.reembed import ReembedReport
    from indexer.reembed import reembed as run_reembed
    from indexer.store import ImageStore
    from indexer.vocabulary import Vocabulary

    stop = threading.Event()
    with reported_errors(), ExitStack() as resources:
        settings = load_settings()
        store = resources.enter_context(ImageStore.open(settings, exclusive=True))
        model = chosen_provider(provider, settings)
        resources.callback(model.close)
        enricher = Enricher.create(settings, model, Vocabulary.load(settings.vocabulary_file))
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


@app.command(cls=ReadableCommand)
def reset(
    yes: bool = typer.Option(False, "--yes", "-y", help="Do not ask for confirmation."),
    verbose: bool = VerboseOpt,
) -> None:
    """Delete the collection: its records, image vectors, failure log, folders, usage and
    batch-job records. Image files are not touched. Asks first unless --yes."""
    setup_logging(verbose)
    from indexer.config import load_settings
    from indexer.store import ImageStore

    with reported_errors():
        settings = load_settings()
        where = settings.chroma_location
        jobs = ImageStore.open_jobs(settings)
        if jobs:
            names = ", ".join(j.job or f"{j.display_name!r} (being created)" for j in jobs)
            images = sum(len(j.images) for j in jobs)
            note(
                f"{len(jobs)} open batch job(s) with {images} images, already paid for, will "
                f"not be collected: {names}; `indexer run --batch` collects them first"
            )
        if not yes:
            typer.confirm(
                f"Delete collection {settings.collection!r} at {where} and everything kept "
                "beside it?",
                abort=True,
                err=True,
            )
        dropped = ImageStore.reset(settings)
    if not dropped:
        err.print(line(f"no collection {settings.collection!r} at {where}; nothing to delete"))
        return
    records = next((n for name, n in dropped if name == settings.collection), 0)
    out.print(
        line(
            f"deleted collection {settings.collection!r} ({records} records) and "
            f"{len(dropped) - 1} collection(s) beside it at {where}"
        )
    )


@app.command(cls=ReadableCommand)
def check(
    repair: bool = typer.Option(
        False, "--repair", help="Mend what the records allow (takes the writer lock)."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object."),
    verbose: bool = VerboseOpt,
) -> None:
    """Verify the store: filter keys, image vectors, keyword partitions, the catalog's own
    collections and its batch log. Exits 1 when something is wrong and not repaired."""
    setup_logging(verbose)
    from indexer.config import load_settings
    from indexer.store import ImageStore

    with reported_errors():
        settings = load_settings()
        with ImageStore.open(settings, exclusive=repair) as store, err.status("checking") as s:
            report = store.verify(repair, lambda stage, n: s.update(f"{stage}: {n:,} read"))
    if as_json:
        print_json(report.as_dict())
    else:
        state = "sound" if report.sound else "NOT sound"
        where = f"{report.collection!r} at {report.location}"
        out.print(line(f"collection {where}: {report.records} records; {state}"))
        for f in report.findings:
            done = (
                "repaired" if f.repaired else ("repairable" if f.repairable else "not repairable")
            )
            sample = ", ".join(f.ids[:3]) + (", ..." if len(f.ids) > 3 else "")
            out.print(
                line(f"  {f.kind} in {f.collection}: {len(f.ids)} ({sample}); {f.detail}; {done}")
            )
    if not report.sound:
        raise typer.Exit(EXIT_UNSOUND)


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


def main() -> None:
    app()
