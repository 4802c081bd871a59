"""`query serve`: a local web gallery over the collection, and the JSON API it uses.

The API has the CLI's and the Python client's semantics (same filters, limits, errors) and
describes itself at /openapi.json (browsable at /docs). Requests pass the guards in
`query.security` first (host, origin, body size, headers). Here:

- Files: an image is served by record id only, and only when the bytes at the recorded path
  still hash to that id: a photo swapped for a symbolic link to another file, a FIFO or a
  device after indexing answers 410, never that other file's bytes.
- Cost: uploads are read up to the size limit; their pixel count is checked from the header
  before decoding; image searches run off the event loop, as many at a time as the provider
  takes (`Provider.concurrency`), and a burst beyond the queue gets 503 with Retry-After.
- Concurrency: no lock around the client; every other route runs in parallel, so a slow
  model call holds up nobody but the searches queued behind it.
- Errors: typed errors answer by what they mean (query/statuses.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import hmac
import logging
import mimetypes
import os
import threading
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Annotated, Any

from fastapi import Depends, FastAPI, File, HTTPException, Query, Request, UploadFile
from fastapi.concurrency import run_in_threadpool
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.responses import HTMLResponse, JSONResponse, Response
from pydantic import BaseModel
from starlette.middleware.trustedhost import TrustedHostMiddleware

from indexer.config import is_loopback_host
from indexer.errors import ConfigError, ImageError, IndexerError, one_line
from indexer.files import read_regular
from indexer.images import content_id
from indexer.records import StoredRecord
from query.client import QueryClient
from query.duplicate_routes import add_duplicate_routes
from query.params import Filtering, Ranked
from query.security import (
    ENVELOPE_BYTES,
    MAX_UPLOAD_BYTES,
    Guard,
    allowed_hosts,
    checked_upload,
    page_policy,
    too_large_message,
)
from query.statuses import RETRY_AFTER_SECONDS, status_of
from query.thumbnails import (
    IMAGE_ID,
    Verified,
    cached_thumbnail,
    make_thumbnail,
    prune_thumbnails,
)

__all__ = ["MAX_UPLOAD_BYTES", "check_exposure", "create_app", "prune_thumbnails"]

log = logging.getLogger(__name__)

IMAGE_SEARCH_QUEUE = 8  # image searches waiting for a model slot before a 503
_PAGE = Path(__file__).with_name("static") / "index.html"


class HitOut(BaseModel):
    id: str
    path: str
    score: float
    keywords: dict[str, list[str]]
    caption: str
    copies: list[str]
    thumbnail: str
    image: str


class RecordOut(BaseModel):
    id: str
    path: str
    copies: list[str]
    keywords: dict[str, list[str]]
    caption: str
    provider: str
    indexed_at: str
    thumbnail: str
    image: str
    metadata: dict[str, Any]


class PageOut(BaseModel):
    total: int
    offset: int
    images: list[RecordOut]
    counts: dict[str, dict[str, int]]


def check_exposure(host: str, token: str | None) -> None:
    """Listening beyond this machine shows the catalog to the network: demand a token."""
    if not is_loopback_host(host) and not token:
        raise ConfigError(
            f"--host {host} is reachable from other machines; set an access token "
            "with --token or QUERY_SERVE_TOKEN"
        )


def create_app(
    client: QueryClient,
    thumbnails: Path,
    token: str | None = None,
    host: str = "127.0.0.1",
) -> FastAPI:
    app = FastAPI(
        title="clothing-indexer search",
        description="Search the clothing image collection by text, by example image and by "
        "keyword. Results are ordered by cosine similarity (`score`, higher is better).",
        version="1",
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
    )
    image_slots: asyncio.Semaphore | None = None  # the provider's concurrency, once known
    admitted = 0  # image searches running or waiting for a slot
    verified = Verified()
    max_file_bytes = client.settings.max_file_bytes
    # Thumbnails of records deleted since are never shown again; take them off the disk.
    threading.Thread(
        target=prune_thumbnails, args=(thumbnails, client), name="prune", daemon=True
    ).start()

    def authorised(request: Request) -> None:
        if token is None:
            return
        scheme, _, credentials = request.headers.get("authorization", "").partition(" ")
        if scheme:
            offered = credentials.strip() if scheme.lower() == "bearer" else ""
        else:
            offered = request.cookies.get("token", "")
            if not offered and request.url.path == "/":
                offered = request.query_params.get("token", "")
        if not hmac.compare_digest(offered.encode(), token.encode()):
            raise HTTPException(401, "missing or wrong access token")

    guarded = [Depends(authorised)]

    def record_out(found: StoredRecord) -> RecordOut:
        return RecordOut(
            id=found.id,
            path=found.path,
            copies=found.copies,
            keywords=found.keywords,
            caption=found.caption,
            provider=str(found.metadata.get("provider", "")),
            indexed_at=str(found.metadata.get("indexed_at", "")),
            thumbnail=f"/api/images/{found.id}/thumbnail",
            image=f"/api/images/{found.id}/file",
            metadata=dict(found.metadata),
        )

    def hits_out(hits: list[Any]) -> list[HitOut]:
        return [
            HitOut(
                **h.to_dict(),
                thumbnail=f"/api/images/{h.id}/thumbnail",
                image=f"/api/images/{h.id}/file",
            )
            for h in hits
        ]

    @app.exception_handler(IndexerError)
    def typed_error(request: Request, exc: IndexerError) -> JSONResponse:
        status, headers = status_of(exc)
        return JSONResponse({"detail": one_line(exc)}, status_code=status, headers=headers)

    page_html = _PAGE.read_text(encoding="utf-8")

    @app.get("/", response_class=HTMLResponse, include_in_schema=False, dependencies=guarded)
    def page(request: Request) -> Response:
        response = HTMLResponse(page_html)
        if token is not None and request.query_params.get("token"):
            response.set_cookie("token", token, httponly=True, samesite="strict")
        return response

    @app.get("/openapi.json", include_in_schema=False, dependencies=guarded)
    def openapi() -> JSONResponse:
        return JSONResponse(app.openapi())

    @app.get("/docs", include_in_schema=False, dependencies=guarded)
    def docs() -> HTMLResponse:
        return get_swagger_ui_html(openapi_url="/openapi.json", title=app.title)

    @app.get("/redoc", include_in_schema=False, dependencies=guarded)
    def redoc() -> HTMLResponse:
        return get_redoc_html(openapi_url="/openapi.json", title=app.title)

    @app.get("/api/facets", dependencies=guarded)
    def facets() -> dict[str, list[str]]:
        """Each facet's allowed keywords: what `where` accepts."""
        return {f: list(words) for f, words in client.vocabulary.facets.items()}

    @app.get("/api/health")
    def health() -> JSONResponse:
        """Whether the store answers, for a monitor: no token needed, nothing private."""
        try:
            found = client.health()
        except IndexerError as exc:
            return JSONResponse(
                {"status": "unavailable", "detail": one_line(exc)},
                status_code=503,
                headers={"Retry-After": str(RETRY_AFTER_SECONDS)},
            )
        return JSONResponse({"status": "ok", **dataclasses.asdict(found)})

    @app.get("/api/images", dependencies=guarded)
    def browse(
        filters: Annotated[Filtering, Depends()],
        limit: Annotated[int, Query(ge=1, le=500)] = 24,
        offset: Annotated[int, Query(ge=0)] = 0,
    ) -> PageOut:
        """The collection itself, newest first, filtered by keyword: a page of records, how
        many match, and per facet how many of them have each keyword."""
        where, exclude = filters.terms
        page = client.browse(where, limit=limit, offset=offset, exclude=exclude)
        return PageOut(
            total=page.total,
            offset=offset,
            images=[record_out(r) for r in page.records],
            counts=page.counts,
        )

    @app.get("/api/search", dependencies=guarded)
    def search_text(
        q: Annotated[str, Query(description='What to look for, e.g. "colorful dress".')],
        filters: Annotated[Filtering, Depends()],
        page: Annotated[Ranked, Depends()],
    ) -> list[HitOut]:
        """Images best described by the text (as `query text`); at most 500 ranked."""
        where, exclude = filters.terms
        return hits_out(client.text(q, where, exclude=exclude, **page.asked))

    @app.post("/api/search/image", dependencies=guarded)
    async def search_image(
        file: Annotated[UploadFile, File(description="An image; it is not stored.")],
        filters: Annotated[Filtering, Depends()],
        page: Annotated[Ranked, Depends()],
        text: Annotated[str | None, Query(description='Words that change it: "in red".')] = None,
    ) -> list[HitOut]:
        """Images most like the uploaded one (as `query image`). At most 20 MiB and 40
        megapixels; a few run at once, and a burst beyond the queue gets 503. The next page
        of the same photo (`offset`) calls no model."""
        where, exclude = filters.terms
        async with model_slot():
            data = await file.read(MAX_UPLOAD_BYTES + 1)
            if len(data) > MAX_UPLOAD_BYTES:
                raise HTTPException(413, too_large_message())
            if not data:
                raise HTTPException(400, "empty upload")
            hits = await run_in_threadpool(
                lambda: client.image(
                    checked_upload(data), where, exclude=exclude, text=text, **page.asked
                )
            )
        return hits_out(hits)

    @app.get("/api/similar/{image_id}", dependencies=guarded)
    async def similar(
        image_id: str,
        filters: Annotated[Filtering, Depends()],
        page: Annotated[Ranked, Depends()],
        text: Annotated[str | None, Query(description='Words that change it: "in red".')] = None,
    ) -> list[HitOut]:
        """More like an indexed image (as `query similar`), from its stored vectors: no model
        call, unless `text` changes it (then it queues with the image searches)."""
        if not IMAGE_ID.fullmatch(image_id):
            raise HTTPException(404, "no such image")
        where, exclude = filters.terms

        def ask() -> list[Any]:
            return client.similar(image_id, where, exclude=exclude, text=text, **page.asked)

        if text is None:
            return hits_out(await run_in_threadpool(ask))
        async with model_slot():
            return hits_out(await run_in_threadpool(ask))

    @contextlib.asynccontextmanager
    async def model_slot() -> AsyncIterator[None]:
        """A turn at the provider: as many at once as it takes, a few more waiting, and 503
        with Retry-After beyond that."""
        nonlocal admitted, image_slots
        if image_slots is None:
            slots = await run_in_threadpool(lambda: client.concurrency)
            if image_slots is None:  # not made by another first search while this one waited
                image_slots = asyncio.Semaphore(slots)
        if admitted >= client.concurrency + IMAGE_SEARCH_QUEUE:
            raise HTTPException(
                503,
                "too many image searches at once; try again shortly",
                headers={"Retry-After": str(RETRY_AFTER_SECONDS)},
            )
        admitted += 1
        try:
            async with image_slots:
                yield
        finally:
            admitted -= 1

    def stored(image_id: str) -> StoredRecord:
        """The record with this id: the only way a path reaches the disk."""
        if not IMAGE_ID.fullmatch(image_id):
            raise HTTPException(404, "no such image")
        found = client.record(image_id)
        if found is None:
            raise HTTPException(404, "no such image")
        return found

    def indexed_bytes(found: StoredRecord) -> bytes:
        """The file's bytes, if they are still the ones indexed under this id (else 410)."""
        path = Path(found.path)
        key = Verified.key(path)
        try:
            data = read_regular(path, max_file_bytes)
        except ImageError as exc:
            raise HTTPException(410, f"the image file is no longer readable: {exc}") from exc
        if content_id(data) != found.id:
            raise HTTPException(410, "the file at this path changed after it was indexed")
        verified.add(key, found.id)
        return data

    @app.get("/api/images/{image_id}", dependencies=guarded)
    def record(image_id: str) -> RecordOut:
        """An image's full record."""
        found = stored(image_id)
        if not os.path.isfile(found.path):
            raise HTTPException(410, "the image file is no longer there")
        return record_out(found)

    @app.get("/api/images/{image_id}/file", dependencies=guarded)
    def original(image_id: str) -> Response:
        """The image file itself, exactly the bytes that were indexed."""
        found = stored(image_id)
        data = indexed_bytes(found)
        kind = mimetypes.guess_type(found.path)[0] or ""
        return Response(data, media_type=kind if kind.startswith("image/") else "image/jpeg")

    @app.get("/api/images/{image_id}/thumbnail", dependencies=guarded)
    def thumbnail(image_id: str) -> Response:
        """A JPEG of at most 320 px a side, made on first request and cached."""
        found = stored(image_id)
        cached = thumbnails / f"{image_id}.jpg"
        made = cached_thumbnail(cached)  # a regular file only: a link planted there is not
        if made is not None and verified.holds(Verified.key(Path(found.path)), image_id):
            return Response(made, media_type="image/jpeg")
        data = indexed_bytes(found)
        if made is None:
            try:
                made = make_thumbnail(data, cached)
            except ImageError as exc:
                raise HTTPException(422, f"cannot make a thumbnail: {exc}") from exc
        return Response(made, media_type="image/jpeg")

    add_duplicate_routes(app, client, guarded)
    app.add_middleware(
        Guard, page_csp=page_policy(page_html), max_body=MAX_UPLOAD_BYTES + ENVELOPE_BYTES
    )
    app.add_middleware(TrustedHostMiddleware, allowed_hosts=allowed_hosts(host))
    return app
