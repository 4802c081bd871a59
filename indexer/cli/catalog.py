"""Commands about a catalog as it stands: `status`, `export`, `check`, `reset`."""

from __future__ import annotations

import functools
from pathlib import Path
from typing import TYPE_CHECKING

import typer

from indexer.console import (
    EXIT_UNSOUND,
    ReadableCommand,
    err,
    line,
    neutralise,
    note,
    out,
    print_json,
    reported_errors,
    setup_logging,
)
from indexer.errors import ConfigError

if TYPE_CHECKING:
    from indexer.records import Failure
from indexer.cli.app import VerboseOpt, app, usage_line


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
    from indexer.prices import Prices
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
        prices = Prices.load(settings.prices_file)
    # Descriptions at online prices (a batch run paid half of that for its share), by the
    # model configured now; None for a model the price table lacks.
    cost = prices.generation(
        settings.generation_model, usage.prompt_tokens, usage.output_tokens, usage.thinking_tokens
    )
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
                "usage": {
                    **usage.as_dict(),
                    "runs": runs,
                    "cost_usd": round(cost, 4) if cost is not None else None,
                },
                "batches": [
                    {
                        "job": j.job,
                        "kind": j.kind,
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
        spent = f"${cost:,.4f} at online prices" if cost is not None else "cost unknown"
        out.print(
            line(
                f"spent over {runs} run(s): {usage_line(usage, indexed)}; {spent} "
                f"({prices.source}, {prices.as_of})"
            )
        )
    for j in jobs:
        out.print(
            line(
                f"  batch job {j.job or '(not created yet)'} ({j.kind}): {j.state}, "
                f"{len(j.images)} images, "
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
