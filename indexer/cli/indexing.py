"""`indexer run` (online or through the Batch API) and `indexer watch`."""

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
    EXIT_FAILED_IMAGES,
    ReadableCommand,
    err,
    line,
    note,
    out,
    print_json,
    reported_errors,
    setup_logging,
    stop_with,
)
from indexer.errors import ConfigError, NoCollectionError
from indexer.vocabulary import Vocabulary

if TYPE_CHECKING:
    from indexer.budget import Budget
    from indexer.config import Settings
    from indexer.pipeline import Indexer, Shard
from indexer.cli.app import VerboseOpt, app, usage_line
from indexer.wiring import indexing


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
    dry_run: bool = typer.Option(
        False,
        "--dry-run",
        help="Make no model call and write nothing: say which images the run would describe, "
        "its requests, tokens and cost in USD online and in batch mode.",
    ),
    as_json: bool = typer.Option(False, "--json", help="With --dry-run: end with one JSON line."),
    max_cost: float | None = typer.Option(
        None,
        "--max-cost",
        metavar="USD",
        min=0.0,
        help="Start no request that would take the run's spend past USD (with --batch: submit "
        "only as many images as it covers); the rest stays pending, exit status 3.",
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
        if as_json and not dry_run:
            raise ConfigError("--json goes with --dry-run")
        if dry_run:
            show_estimate(settings, provider, paths, batch, as_json)
            return
        total = sum(1 for _ in discover(paths))
        indexer = resources.enter_context(indexing(settings, provider))
        store = indexer.store
        if max_cost is not None:
            indexer.enricher.budget = spending_cap(settings, indexer, max_cost, batch)
        if indexer.enricher.provider.loads_models:
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
    if report.stopped is not None:
        stop_with(report.stopped)
    if report.failures:
        raise typer.Exit(EXIT_FAILED_IMAGES)


def spending_cap(settings: Settings, indexer: Indexer, usd: float, batch: bool) -> Budget:
    """The run's budget, priced by the price table (which must know the model), at the
    Batch API's share of it for a batch run."""
    from indexer.budget import Budget
    from indexer.prices import Prices

    prices = Prices.load(settings.prices_file)
    provider = indexer.enricher.provider
    if provider.bills_tokens and prices.of(settings.generation_model) is None:
        raise ConfigError(
            f"--max-cost: no price for {settings.generation_model} in {prices.source}; "
            "set INDEXER_PRICES to a table that has one"
        )
    return Budget(
        usd,
        prices,
        settings.generation_model,
        settings.embedding_model,
        settings.thinking_level,
        indexer.enricher.remote_pictures,
        batch,
    )


def show_estimate(
    settings: Settings, provider: str | None, paths: list[Path], batch: bool, as_json: bool
) -> None:
    """`indexer run --dry-run`: what the run would send and cost (indexer/estimate.py)."""
    from indexer.estimate import estimate
    from indexer.store import ImageStore
    from indexer.wiring import chosen_provider

    model = chosen_provider(provider, settings)
    try:
        try:
            store: ImageStore | None = ImageStore.open(settings)
        except NoCollectionError:
            store = None  # nothing indexed yet: every image is to describe
        found = estimate(settings, store, model, Vocabulary.load(settings.vocabulary_file), paths)
    finally:
        model.close()
    cost = found.batch_usd if batch else found.online_usd
    mode = "in batch mode" if batch else "online"
    out.print(
        line(
            f"would describe {found.images} image(s)"
            + (f" ({found.unreadable} unreadable: recorded as failed)" if found.unreadable else "")
            + f": {found.generation_requests} generation and {found.embedding_requests} "
            f"embedding requests; tokens: prompt {found.prompt_tokens:,}, output "
            f"{found.output_tokens:,}, thinking {found.thinking_tokens:,}"
        )
    )
    if cost is None:
        out.print(
            line(
                f"cost: unknown (no price for {settings.generation_model} in "
                f"{found.prices}; set INDEXER_PRICES)"
            )
        )
    else:
        other = found.online_usd if batch else found.batch_usd
        out.print(
            line(
                f"cost {mode}: ${cost:,.4f}"
                + (
                    f" ({'online' if batch else 'in batch mode'}: ${other:,.4f})"
                    if other is not None
                    else ""
                )
                + f"; prices from {found.prices}"
            )
        )
    if as_json:
        print_json(found.as_json(), one_line=True)


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
        if report.stopped is not None:
            stop_with(report.stopped)
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
    if report.stopped is not None:
        stop_with(report.stopped)  # the budget covered no more images: exit 3
    if report.failures:
        raise typer.Exit(EXIT_FAILED_IMAGES)


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
