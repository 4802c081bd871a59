"""The terminal: both CLIs print through here, so data is always shown as data.

Paths, captions, keywords and failure reasons come from files and models that others control.
They are never parsed as Rich markup (a file named `r[/x].jpg` must not crash the CLI or lose
text) and their control characters are shown escaped (`\\x1b`), so a file name cannot move
the cursor, recolour the terminal or reorder text with bidirectional overrides.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator
from contextlib import contextmanager

import typer
from rich.console import Console
from rich.logging import RichHandler
from rich.text import Text

from indexer.errors import IndexerError

err = Console(stderr=True, soft_wrap=True, emoji=False, highlight=False)
out = Console(soft_wrap=True, emoji=False, highlight=False)

EXIT_FAILED_IMAGES = 1
EXIT_ERROR = 2

# C0 and C1 controls, DEL, and the invisible format characters that reorder or hide text.
_UNSAFE = re.compile(r"[\x00-\x1f\x7f-\x9f\u200b-\u200f\u202a-\u202e\u2066-\u2069\ufeff]")


def _escape(match: re.Match[str]) -> str:
    code = ord(match.group())
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def neutralise(text: str) -> str:
    """`text` with every control or bidi-format character replaced by a visible escape."""
    return _UNSAFE.sub(_escape, text)


def shown(text: object, style: str = "") -> Text:
    """Data as a Rich Text: no markup, no emoji codes, control characters escaped."""
    return Text(neutralise(str(text)), style=style)


def line(*parts: str | tuple[str, str]) -> Text:
    """One line from parts: plain strings are data; (text, style) pairs are styled data."""
    return Text.assemble(*(shown(p) if isinstance(p, str) else shown(p[0], p[1]) for p in parts))


def note(text: str | None) -> None:
    """A one-line "note: ..." on stderr, when there is something to say."""
    if text:
        err.print(line(("note:", "yellow"), " ", text))


@contextmanager
def reported_errors() -> Iterator[None]:
    """Turn the library's typed errors into a one-line message and an exit code."""
    try:
        yield
    except IndexerError as exc:
        err.print(line(("error:", "red"), " ", " ".join(str(exc).split())))
        raise typer.Exit(EXIT_ERROR) from exc


def _print_version(asked: bool) -> None:
    if asked:
        from importlib.metadata import PackageNotFoundError, version

        try:
            number = version("clothing-indexer")
        except PackageNotFoundError:  # run from a source tree without installing
            number = "unknown"
        out.print(line(f"clothing-indexer {number}"))
        raise typer.Exit(0)


# The app callback both CLIs share (no docstring: it would replace the apps' own help).
def version_option(
    version: bool = typer.Option(
        False, "--version", callback=_print_version, is_eager=True, help="Print the version."
    ),
) -> None:
    pass


class _Neutralising(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        record.msg, record.args = neutralise(record.getMessage()), None
        return True


def setup_logging(verbose: bool) -> None:
    handler = RichHandler(console=err, show_path=False, show_time=False, markup=False)
    handler.addFilter(_Neutralising())
    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING,
        format="%(message)s",
        handlers=[handler],
        force=True,
    )
    # Failures are reported in the summary; retries only with --verbose.
    logging.getLogger("indexer.pipeline").setLevel(logging.INFO if verbose else logging.ERROR)
    for noisy in ("httpx", "httpx2", "chromadb", "google_genai"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
