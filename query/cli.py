"""`query`: search the clothing image collection by text or by example image."""

from __future__ import annotations

import json
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


def _show(hits: list[Hit], as_json: bool) -> None:
    if as_json:
        typer.echo(json.dumps([h.to_dict() for h in hits], ensure_ascii=False, indent=2))
        return
    if not hits:
        out.print("no matching images")
        return
    table = Table(show_lines=False)
    for column in ("#", "score", "path", "keywords", "caption"):
        table.add_column(column, overflow="fold")
    for rank, hit in enumerate(hits, 1):
        keywords = "; ".join(f"{f}: {', '.join(ws)}" for f, ws in hit.keywords.items() if ws)
        table.add_row(str(rank), f"{hit.score:.3f}", hit.path, keywords, hit.caption)
    out.print(table)


@app.command()
def text(
    text: str = typer.Argument(..., help='What to look for, e.g. "colorful dress".'),
    where: list[str] = WhereOpt,
    limit: int = LimitOpt,
    as_json: bool = JsonOpt,
    verbose: bool = VerboseOpt,
) -> None:
    """Find images by a natural-language description."""
    setup_logging(verbose)
    with reported_errors(), QueryClient.from_env() as client:
        hits = client.text(text, where=parse_where(where), limit=limit)
    _show(hits, as_json)


@app.command()
def image(
    path: Path = typer.Argument(..., help="An image file; it is not added to the collection."),
    where: list[str] = WhereOpt,
    limit: int = LimitOpt,
    as_json: bool = JsonOpt,
    verbose: bool = VerboseOpt,
) -> None:
    """Find images similar to an example image."""
    setup_logging(verbose)
    with reported_errors(), QueryClient.from_env() as client:
        hits = client.image(path, where=parse_where(where), limit=limit)
    _show(hits, as_json)


def main() -> None:
    app()
