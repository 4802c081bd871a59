"""The terminal: both CLIs print through here, so data is always shown as data.

Paths, captions, keywords and failure reasons come from files and models that others control.
They are never parsed as Rich markup (a file named `r[/x].jpg` must not crash the CLI or lose
text) and their control characters are shown escaped (`\\x1b`), so a file name cannot move
the cursor, recolour the terminal or reorder text with bidirectional overrides.
"""

from __future__ import annotations

import functools
import logging
import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, NoReturn

import typer
from rich.console import Console
from rich.logging import RichHandler
from rich.text import Text
from typer.core import TyperArgument, TyperCommand, TyperGroup

from indexer.errors import IndexerError, QuotaExhaustedError

err = Console(stderr=True, soft_wrap=True, emoji=False, highlight=False)
out = Console(soft_wrap=True, emoji=False, highlight=False)

# One rule for both CLIs: 0 done, 1 done but something is wrong with the data (images that
# failed, a store that is not sound), 2 an error stopped the command, 3 a quota stopped it
# (nothing failed: run it again once the quota is back).
EXIT_FAILED_IMAGES = 1
EXIT_UNSOUND = 1
EXIT_ERROR = 2
EXIT_QUOTA = 3

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


def short_path(path: str, width: int, cwd: str | None = None, home: str | None = None) -> str:
    """`path` as a user would write it, in at most `width` characters: relative to the
    working folder when under it, `~/...` under the home folder, and the middle folders
    elided (`/srv/…/summer/dress.jpg`) when still too long; the file name is kept whole."""
    cwd = os.getcwd() if cwd is None else cwd
    home = os.path.expanduser("~") if home is None else home
    text = path
    if cwd != os.sep and path.startswith(cwd.rstrip(os.sep) + os.sep):
        text = path[len(cwd.rstrip(os.sep)) + 1 :]
    elif home not in ("", os.sep) and path.startswith(home.rstrip(os.sep) + os.sep):
        text = "~" + path[len(home.rstrip(os.sep)) :]
    if len(text) <= width:
        return text
    head, _, name = text.rpartition(os.sep)
    room = width - len(name) - 2  # "…" and the separator before the name
    if room <= 0:
        return "…" + name[-(width - 1) :] if width > 1 else name
    return head[: room // 2] + "…" + head[len(head) - (room - room // 2) :] + os.sep + name


def line(*parts: str | tuple[str, str]) -> Text:
    """One line from parts: plain strings are data; (text, style) pairs are styled data."""
    return Text.assemble(*(shown(p) if isinstance(p, str) else shown(p[0], p[1]) for p in parts))


def print_json(data: Any, one_line: bool = False) -> None:
    """`data` as indented JSON (or on `one_line`) on stdout, with nothing in it a terminal
    would act on."""
    from indexer.export import json_text

    typer.echo(json_text(data, indent=None if one_line else 2))


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
        stop_with(exc)


def stop_with(exc: IndexerError) -> NoReturn:
    """The error in one line, and the exit code its type has."""
    err.print(line(("error:", "red"), " ", " ".join(str(exc).split())))
    raise typer.Exit(EXIT_QUOTA if isinstance(exc, QuotaExhaustedError) else EXIT_ERROR) from exc


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


class _ReadableHelp:
    """Help that names what to type, not Python's types: `--where FACET=VALUE`, `--limit
    INTEGER`, `PATHS...` rather than `<list[str]>`, `<int>`, `<list[Path]>`."""

    def get_params(self, ctx: Any) -> list[Any]:
        # Typer's TyperCommand declares no types for Click's get_params.
        params = super().get_params(ctx)  # type: ignore[misc]
        for param in params:
            # Typer's help asks each parameter for its type's label; answer for it.
            param.display_type_rich = functools.partial(_readable_type, param)
        return params


class ReadableCommand(_ReadableHelp, TyperCommand):
    pass


class ReadableGroup(_ReadableHelp, TyperGroup):
    """Commands listed in the order of a catalog's life, not in the order their modules
    registered them; a command not named here comes last."""

    order: tuple[str, ...] = (
        "run",
        "status",
        "watch",
        "export",
        "reembed",
        "reset",
        "check",
        "train-tagger",
    )

    def list_commands(self, ctx: Any) -> list[str]:
        names = super().list_commands(ctx)
        rank = {name: i for i, name in enumerate(self.order)}
        return sorted(names, key=lambda name: rank.get(name, len(rank)))


_TYPE_NAMES = {"int": "INTEGER", "float": "NUMBER", "str": "TEXT", "path": "PATH", "Path": "PATH"}


def _readable_type(param: Any, ctx: Any) -> str | None:
    if isinstance(param, TyperArgument) or getattr(param, "is_bool_flag", False):
        return None  # an argument's name already says it; a flag takes no value
    if param.metavar:
        return str(param.metavar)
    label = str(param.display_type(ctx)).strip("<>")
    many = label.startswith("list[")
    label = label.removeprefix("list[").removesuffix("]")
    label = _TYPE_NAMES.get(label, label if "|" in label else label.upper())
    return f"{label}..." if many else label


class _Neutralising(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        record.msg, record.args = neutralise(record.getMessage()), None
        return True


def setup_logging(verbose: bool) -> None:
    handler = RichHandler(
        console=err, show_path=False, show_time=False, show_level=False, markup=False
    )
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
