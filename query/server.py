"""`query serve`: a local web gallery over the collection, and the JSON API it uses.

The API has the CLI's and the Python client's semantics (same filters, limits, errors) and
describes itself at /openapi.json (browsable at /docs). Images are served by record id only:
the path comes from the collection, never from a request. Thumbnails are made once and
cached under $INDEXER_HOME/thumbnails. Uploads are size-limited and never stored.
"""

from __future__ import annotations

import hmac
import ipaddress
import os
import re
import tempfile
import threading
from pathlib import Path
from typing import Annotated, Any

from fastapi import Depends, FastAPI, File, HTTPException, Query, Request, UploadFile
from fastapi.responses import FileResponse, HTMLResponse, Response
from pydantic import BaseModel

from indexer.errors import ConfigError, ImageError, IndexerError, QueryError
from indexer.images import open_image
from indexer.store import StoredRecord
from query.client import QueryClient, parse_where

MAX_UPLOAD_BYTES = 20 * 1024 * 1024
THUMBNAIL_SIDE = 320
_ID = re.compile(r"[0-9a-f]{32}")
_PAGE = Path(__file__).with_name("static") / "index.html"


class HitOut(BaseModel):
    id: str
    path: str
    score: float
    keywords: dict[str, list[str]]
    caption: str
    thumbnail: str
    image: str


class RecordOut(BaseModel):
    id: str
    path: str
    keywords: dict[str, list[str]]
    caption: str
    image: str
    metadata: dict[str, Any]


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_exposure(host: str, token: str | None) -> None:
    """Listening beyond this machine shows the catalog to the network: demand a token."""
    if not is_loopback(host) and not token:
        raise ConfigError(
            f"--host {host} is reachable from other machines; set an access token "
            "with --token or QUERY_SERVE_TOKEN"
        )


def create_app(client: QueryClient, thumbnails: Path, token: str | None = None) -> FastAPI:
    app = FastAPI(
        title="clothing-indexer search",
        description="Search the clothing image collection by text, by example image and by "
        "keyword. Results are ordered by cosine similarity (`score`, higher is better).",
        version="1",
    )
    lock = threading.Lock()  # one query at a time through the shared client and model

    def authorised(request: Request) -> None:
        if token is None:
            return
        offered = (
            request.headers.get("authorization", "").removeprefix("Bearer ").strip()
            or request.cookies.get("token", "")
            or request.query_params.get("token", "")
        )
        if not hmac.compare_digest(offered.encode(), token.encode()):
            raise HTTPException(401, "missing or wrong access token")

    guarded = [Depends(authorised)]

    def hits_out(hits: list[Any]) -> list[HitOut]:
        return [
            HitOut(
                **h.to_dict(),
                thumbnail=f"/api/images/{h.id}/thumbnail",
                image=f"/api/images/{h.id}/file",
            )
            for h in hits
        ]

    def ask(call: Any) -> Any:
        try:
            with lock:
                return call()
        except QueryError as exc:
            raise HTTPException(400, str(exc)) from exc
        except IndexerError as exc:
            raise HTTPException(503, str(exc)) from exc

    @app.get("/", response_class=HTMLResponse, include_in_schema=False, dependencies=guarded)
    def page(request: Request) -> Response:
        response = HTMLResponse(_PAGE.read_text(encoding="utf-8"))
        if token is not None and request.query_params.get("token"):
            response.set_cookie("token", token, httponly=True, samesite="strict")
        return response

    @app.get("/api/facets", dependencies=guarded)
    def facets() -> dict[str, list[str]]:
        """Each facet's allowed keywords: what `where` accepts."""
        return {f: list(words) for f, words in client.vocabulary.facets.items()}

    @app.get("/api/search", dependencies=guarded)
    def search_text(
        q: Annotated[str, Query(description='What to look for, e.g. "colorful dress".')],
        where: Annotated[
            list[str], Query(description="FACET=VALUE, e.g. season=summer; repeat to AND.")
        ] = [],  # noqa: B006 - FastAPI copies defaults
        limit: Annotated[int, Query(ge=1, le=500)] = 24,
    ) -> list[HitOut]:
        """Images best described by the text (as `query text`)."""
        return hits_out(ask(lambda: client.text(q, where=parse_where(where), limit=limit)))

    @app.post("/api/search/image", dependencies=guarded)
    async def search_image(
        file: Annotated[UploadFile, File(description="An image; it is not stored.")],
        where: Annotated[list[str], Query()] = [],  # noqa: B006
        limit: Annotated[int, Query(ge=1, le=500)] = 24,
    ) -> list[HitOut]:
        """Images most like the uploaded one (as `query image`)."""
        data = await file.read(MAX_UPLOAD_BYTES + 1)
        if len(data) > MAX_UPLOAD_BYTES:
            raise HTTPException(413, f"upload larger than {MAX_UPLOAD_BYTES // 2**20} MiB")
        if not data:
            raise HTTPException(400, "empty upload")
        return hits_out(ask(lambda: client.image(data, where=parse_where(where), limit=limit)))

    def stored_file(image_id: str) -> tuple[StoredRecord, Path]:
        """The record with this id and its file: the only way a path reaches the disk."""
        if not _ID.fullmatch(image_id):
            raise HTTPException(404, "no such image")
        found = ask(lambda: client.record(image_id))
        if found is None:
            raise HTTPException(404, "no such image")
        path = Path(found.path)
        if not path.is_file():
            raise HTTPException(410, "the image file is no longer there")
        return found, path

    @app.get("/api/images/{image_id}", dependencies=guarded)
    def record(image_id: str) -> RecordOut:
        """An image's full record."""
        found, _ = stored_file(image_id)
        return RecordOut(
            id=found.id,
            path=found.path,
            keywords=found.keywords,
            caption=found.caption,
            image=f"/api/images/{image_id}/file",
            metadata=dict(found.metadata),
        )

    @app.get("/api/images/{image_id}/file", dependencies=guarded)
    def original(image_id: str) -> FileResponse:
        """The image file itself."""
        _, path = stored_file(image_id)
        return FileResponse(path)

    @app.get("/api/images/{image_id}/thumbnail", dependencies=guarded)
    def thumbnail(image_id: str) -> FileResponse:
        """A JPEG of at most 320 px a side, made on first request and cached."""
        _, path = stored_file(image_id)
        cached = thumbnails / f"{image_id}.jpg"
        if not cached.exists():
            try:
                img = open_image(path.read_bytes(), THUMBNAIL_SIDE)
            except (OSError, ImageError) as exc:
                raise HTTPException(422, f"cannot make a thumbnail: {exc}") from exc
            thumbnails.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=thumbnails, suffix=".tmp")
            with os.fdopen(fd, "wb") as fh:
                img.save(fh, format="JPEG", quality=85)
            os.replace(tmp, cached)
        return FileResponse(cached, media_type="image/jpeg")

    return app
