"""`indexer duplicates`: the catalog's duplicate photos, and pairs dismissed as not."""

from __future__ import annotations

import typer

from indexer.cli.app import VerboseOpt, app
from indexer.console import (
    ReadableCommand,
    err,
    line,
    out,
    print_json,
    reported_errors,
    setup_logging,
)
from indexer.errors import ConfigError


@app.command(cls=ReadableCommand)
def duplicates(
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object."),
    kind: list[str] = typer.Option(
        [],
        "--kind",
        metavar="exact|near|variants",
        help="Only these kinds (default: exact and near; variants only when asked).",
    ),
    dismiss: tuple[str, str] | None = typer.Option(
        None,
        "--dismiss",
        metavar="A B",
        help="Record that two images (ids or paths) are not duplicates; never reported again.",
    ),
    verbose: bool = VerboseOpt,
) -> None:
    """List groups of duplicate photos: the same bytes at several paths (exact), or the same
    picture re-encoded, resized, cropped a little, recoloured or marked (near). The first of
    each group is the copy to keep (most pixels, best format, oldest). Nothing is deleted."""
    setup_logging(verbose)
    from indexer import duplicates as found_duplicates
    from indexer.config import load_settings
    from indexer.store import ImageStore

    with reported_errors():
        kinds = kind or ["exact", "near"]
        unknown = [k for k in kinds if k not in found_duplicates.KINDS]
        if unknown:
            raise ConfigError(f"--kind {unknown[0]!r}: choose exact, near or variants")
        settings = load_settings()
        if dismiss is not None:
            with ImageStore.open(settings, exclusive=True) as store:
                found_duplicates.dismiss(store, *dismiss)
            err.print(line(f"dismissed: {dismiss[0]} and {dismiss[1]} are not duplicates"))
            return
        with ImageStore.open(settings) as store:
            missing = any(not r.metadata.get("likeness") for r in store.records())
        if missing and {"near", "variants"} & set(kinds):
            with ImageStore.open(settings, exclusive=True) as store, err.status("") as shown:

                def progress(done: int, total: int) -> None:
                    shown.update(f"fingerprinting images indexed before: {done:,} of {total:,}")

                made, unreadable = found_duplicates.fill_likeness(store, settings, progress)
            err.print(
                line(
                    f"fingerprinted {made} image(s) indexed before fingerprints were"
                    + (f"; {unreadable} unreadable or changed, left out" if unreadable else "")
                )
            )
        with ImageStore.open(settings) as store, err.status("comparing"):
            groups = found_duplicates.find(store, kinds)
    if as_json:
        print_json(
            {
                "groups": [
                    {"kind": g.kind, "images": [{"id": c.id, "path": c.path} for c in g.images]}
                    for g in groups
                ]
            }
        )
        return
    if not groups:
        out.print(line("no duplicates"))
        return
    for group in groups:
        out.print(line(f"{group.kind} ({len(group.images)}):"))
        for n, copy in enumerate(group.images):
            size = f"{copy.width}x{copy.height} {copy.format or '?'}, {copy.bytes:,} bytes"
            mark = "  keep " if n == 0 else "       "
            out.print(line(f"{mark}{copy.path}  [{size}]  {copy.id}"))
