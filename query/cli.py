"""`query`: search the clothing image collection by text or by example image."""

from __future__ import annotations

import errno
import socket
from collections.abc import Callable
from pathlib import Path

import typer
from rich.table import Table

from indexer.config import load_settings
from indexer.console import (
    ReadableCommand,
    ReadableGroup,
    err,
    line,
    note,
    out,
    print_json,
    reported_errors,
    setup_logging,
    short_path,
    shown,
    version_option,
)
from indexer.errors import ConfigError
from query.client import QueryClient
from query.filters import parse_where
from query.hits import Hit

app = typer.Typer(
    help="Search the clothing image collection by text or by example image.",
    no_args_is_help=True,
    add_completion=False,
    cls=ReadableGroup,
)
app.callback()(version_option)

WhereOpt = typer.Option(
    [],
    "--where",
    "-w",
    metavar="FACET=VALUE",
    help="Keyword filter FACET=VALUE, e.g. color=red; repeat to AND.",
)
ExcludeOpt = typer.Option(
    [],
    "--exclude",
    "-x",
    metavar="FACET=VALUE",
    help="Leave out images with this keyword, e.g. color=black; repeatable.",
)
MinScoreOpt = typer.Option(
    None,
    "--min-score",
    metavar="S",
    help="Leave out results scoring below S (cosine similarity; see docs/usage.md).",
)
WordsOpt = typer.Option(
    None,
    "--text",
    "-t",
    metavar="WORDS",
    help='Words that change the picture, e.g. "in red".',
)
# No min=1 here: the client says "limit must be at least 1" in one line, not a usage box.
LimitOpt = typer.Option(10, "--limit", "-n", help="Number of results (at least 1).")
JsonOpt = typer.Option(False, "--json", help="Print a JSON array instead of a table.")
VerboseOpt = typer.Option(False, "--verbose", "-v", help="Log retries and each failure.")
QUERY_STORE_RETRY_SECONDS = 5.0


def _open_client() -> QueryClient:
    # A search or a page waiting minutes for a Chroma server that went away helps nobody:
    # the command says so, and the gallery answers 503 with Retry-After, after a few seconds.
    settings = load_settings()
    retry = min(settings.store_retry_seconds, QUERY_STORE_RETRY_SECONDS)
    client = QueryClient(settings.model_copy(update={"store_retry_seconds": retry}))
    if client.settings.google_api_key:
        note(client.settings.endpoint_notice())
    return client


Terms = dict[str, list[str]]
Ask = Callable[[QueryClient, Terms, Terms], list[Hit]]


def _search(as_json: bool, verbose: bool, ask: Ask, where: list[str], exclude: list[str]) -> None:
    setup_logging(verbose)
    with reported_errors(), _open_client() as client:
        # A malformed term is a one-line error like the rest.
        filters, excluded = parse_where(where), parse_where(exclude)
        hits = ask(client, filters, excluded)
        for facet, provider in client.untagged(filters):
            note(_untagged_hint(facet, provider))
    if as_json:
        print_json([h.to_dict() for h in hits])
    elif not hits:
        out.print(line("no matching images"))
    else:
        out.print(_table(hits))


def _untagged_hint(facet: str, provider: str) -> str:
    """Why `--where FACET=...` matches nothing, and how to get such tags."""
    start = f"no image in this collection has a {facet} keyword"
    if provider == "local":
        return (
            f"{start}: the local provider tags garment and color (and the facets you trained "
            f"heads for); teach it {facet} with `indexer train-tagger FOLDER`, or index with "
            "Gemini (GOOGLE_API_KEY)"
        )
    return (
        f"{start}: the {provider} provider gave none; check the vocabulary's {facet} keywords "
        "(INDEXER_VOCABULARY)"
    )


def _table(hits: list[Hit]) -> Table:
    keywords = [
        "; ".join(f"{f}: {', '.join(ws)}" for f, ws in hit.keywords.items() if ws) for hit in hits
    ]
    # Paths get what the other columns leave (those wrap beyond 30 characters), and are
    # shortened to fit rather than wrapped, which would split the file name.
    others = sum(
        min(30, max(map(len, col), default=0)) for col in (keywords, [h.caption for h in hits])
    )
    room = max(16, out.width - others - len(str(len(hits))) - 5 - 16)
    paths = [short_path(hit.path, room) for hit in hits]
    table = Table(show_lines=False)
    table.add_column("#")
    table.add_column("score")
    table.add_column("path", no_wrap=True, min_width=max(map(len, paths), default=4))
    table.add_column("keywords", overflow="fold")
    table.add_column("caption", overflow="fold")
    for rank, (hit, path, words) in enumerate(zip(hits, paths, keywords, strict=True), 1):
        table.add_row(str(rank), f"{hit.score:.3f}", shown(path), shown(words), shown(hit.caption))
    return table


@app.command(cls=ReadableCommand)
def text(
    text: str = typer.Argument(..., help='What to look for, e.g. "colorful dress".'),
    where: list[str] = WhereOpt,
    exclude: list[str] = ExcludeOpt,
    limit: int = LimitOpt,
    min_score: float | None = MinScoreOpt,
    as_json: bool = JsonOpt,
    verbose: bool = VerboseOpt,
) -> None:
    """Find images by a natural-language description."""
    _search(
        as_json,
        verbose,
        lambda c, w, x: c.text(text, where=w, exclude=x, limit=limit, min_score=min_score),
        where,
        exclude,
    )


@app.command(cls=ReadableCommand)
def image(
    path: Path = typer.Argument(..., help="An image file; it is not added to the collection."),
    words: str | None = WordsOpt,
    where: list[str] = WhereOpt,
    exclude: list[str] = ExcludeOpt,
    limit: int = LimitOpt,
    min_score: float | None = MinScoreOpt,
    as_json: bool = JsonOpt,
    verbose: bool = VerboseOpt,
) -> None:
    """Find images similar to an example image (changed by --text words)."""

    def ask(c: QueryClient, w: Terms, x: Terms) -> list[Hit]:
        return c.image(path, w, limit, exclude=x, text=words, min_score=min_score)

    _search(as_json, verbose, ask, where, exclude)


@app.command(cls=ReadableCommand)
def similar(
    ref: str = typer.Argument(..., help="An indexed image: its record id or its file's path."),
    words: str | None = WordsOpt,
    where: list[str] = WhereOpt,
    exclude: list[str] = ExcludeOpt,
    limit: int = LimitOpt,
    min_score: float | None = MinScoreOpt,
    as_json: bool = JsonOpt,
    verbose: bool = VerboseOpt,
) -> None:
    """Find more like an indexed image, from its stored vectors (no model call)."""

    def ask(c: QueryClient, w: Terms, x: Terms) -> list[Hit]:
        return c.similar(ref, w, limit, exclude=x, text=words, min_score=min_score)

    _search(as_json, verbose, ask, where, exclude)


@app.command(cls=ReadableCommand)
def serve(
    host: str = typer.Option("127.0.0.1", "--host", help="Address to listen on."),
    port: int = typer.Option(8080, "--port", help="Port to listen on."),
    token: str | None = typer.Option(
        None,
        "--token",
        help="Access token (default: QUERY_SERVE_TOKEN); required off loopback addresses.",
    ),
    verbose: bool = VerboseOpt,
) -> None:
    """Serve a web gallery: search box, facet filters, search by uploaded image.

    The JSON API under it is described at /openapi.json (browsable at /docs). Open
    http://HOST:PORT/?token=TOKEN once when a token is set; the page remembers it.
    """
    setup_logging(verbose)
    import uvicorn

    from query.security import access_log_config
    from query.server import check_exposure, create_app

    with reported_errors():
        client = _open_client()
        token = token or client.settings.serve_token
        check_exposure(host, token)
        client.record("0" * 32)  # fail now, with a clear message, if there is no collection
        app_ = create_app(client, client.settings.home / "thumbnails", token, host=host)
        sock = _bound(host, port)  # bound before "serving" is said, so the line is true
    address = f"[{host}]" if ":" in host else host
    url = f"http://{address}:{sock.getsockname()[1]}/"
    err.print(line(f"serving {client.settings.collection!r} at {url} (Ctrl-C to stop)"))
    config = uvicorn.Config(
        app_, log_level="info" if verbose else "warning", log_config=access_log_config()
    )
    uvicorn.Server(config).run(sockets=[sock])


def _bound(host: str, port: int) -> socket.socket:
    """A listening socket on host:port, or a one-line error (port taken, no such address)."""
    try:
        family = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0][0]
        return socket.create_server((host, port), family=family, backlog=2048)
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE:
            raise ConfigError(
                f"port {port} on {host} is already in use; pick another with --port"
            ) from None
        raise ConfigError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None


def main() -> None:
    app()
