"""The `indexer` command group, and what its commands share."""

from __future__ import annotations

from typing import TYPE_CHECKING

import typer

from indexer.console import (
    ReadableGroup,
    version_option,
)

if TYPE_CHECKING:
    from indexer.records import Usage


app = typer.Typer(
    help="Tag, caption and embed clothing photos into a Chroma collection.",
    no_args_is_help=True,
    add_completion=False,
    cls=ReadableGroup,
)
app.callback()(version_option)


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


def main() -> None:
    app()
