"""`query`: search the clothing image collection by text or by example image."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import typer
from rich.table import Table

from indexer.cli import VerboseOpt, out, reported_errors, setup_logging
from indexer.store import Hit
from query.client import QueryClient, parse_where

app = typer.Typer(
    help="Search the clothing image collection by text or by example image.",
    no_args_is_help=True,
    add_completion=False,
)

WhereOpt = typer.Option(
    [], "--where", "-w", help="Keyword filter FACET=VALUE, e.g. season=summer; repeat to AND."
)
LimitOpt = typer.Option(10, "--limit", "-n", min=1, help="Number of results.")
JsonOpt = typer.Option(False, "--json", help="Print a JSON array instead of a table.")


def _search(as_json: bool, verbose: bool, ask: Callable[[QueryClient], list[Hit]]) -> None:
    setup_logging(verbose)
    with reported_errors(), QueryClient.from_env() as client:
        hits = ask(client)
    if as_json:
        typer.echo(json.dumps([h.to_dict() for h in hits], ensure_ascii=False, indent=2))
    elif not hits:
        out.print("no matching images")
    else:
        out.print(_table(hits))


def _table(hits: list[Hit]) -> Table:
    table = Table(show_lines=False)
    for column in ("#", "score", "path", "keywords", "caption"):
        table.add_column(column, overflow="fold")
    for rank, hit in enumerate(hits, 1):
        keywords = "; ".join(f"{f}: {', '.join(ws)}" for f, ws in hit.keywords.items() if ws)
        table.add_row(str(rank), f"{hit.score:.3f}", hit.path, keywords, hit.caption)
    return table


@app.command()
def text(
    text: str = typer.Argument(..., help='What to look for, e.g. "colorful dress".'),
    where: list[str] = WhereOpt,
    limit: int = LimitOpt,
    as_json: bool = JsonOpt,
    verbose: bool = VerboseOpt,
) -> None:
    """Find images by a natural-language description."""
    _search(as_json, verbose, lambda c: c.text(text, where=parse_where(where), limit=limit))


@app.command()
def image(
    path: Path = typer.Argument(..., help="An image file; it is not added to the collection."),
    where: list[str] = WhereOpt,
    limit: int = LimitOpt,
    as_json: bool = JsonOpt,
    verbose: bool = VerboseOpt,
) -> None:
    """Find images similar to an example image."""
    _search(as_json, verbose, lambda c: c.image(path, where=parse_where(where), limit=limit))


def main() -> None:
    app()
