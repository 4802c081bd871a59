"""The gallery's duplicates view over the JSON API: `GET /api/duplicates` lists the catalog's
groups as `indexer duplicates` does (the copy to keep first), with each image's size and
thumbnail; `POST /api/duplicates/dismiss` records a pair as not duplicates. Nothing is ever
deleted, and no path from a request reaches the file system: images are named by record id,
and a path only picks one of a record's own paths."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import FastAPI, HTTPException, Query
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel

from query.client import QueryClient
from query.thumbnails import IMAGE_ID

KIND = "exact, near or variants; repeatable (default: exact and near)."


class CopyOut(BaseModel):
    id: str
    path: str
    width: int
    height: int
    format: str
    bytes: int
    thumbnail: str


class GroupOut(BaseModel):
    kind: str
    images: list[CopyOut]


class DuplicatesOut(BaseModel):
    groups: list[GroupOut]


class ImageRef(BaseModel):
    id: str
    path: str | None = None  # one of the record's paths: two copies of one record


class DismissIn(BaseModel):
    a: ImageRef
    b: ImageRef


def add_duplicate_routes(app: FastAPI, client: QueryClient, guarded: list[Any]) -> None:
    @app.get("/api/duplicates", dependencies=guarded)
    async def duplicates(
        kind: Annotated[list[str] | None, Query(description=KIND)] = None,
    ) -> DuplicatesOut:
        """Groups of duplicate photos, the copy to keep first (most pixels, best format,
        oldest)."""
        kinds = kind or ["exact", "near"]
        unknown = [k for k in kinds if k not in ("exact", "near", "variants")]
        if unknown:
            raise HTTPException(400, f"kind {unknown[0]!r}: choose exact, near or variants")
        groups = await run_in_threadpool(client.duplicates, kinds)
        return DuplicatesOut(
            groups=[
                GroupOut(
                    kind=g.kind,
                    images=[
                        CopyOut(
                            id=c.id,
                            path=c.path,
                            width=c.width,
                            height=c.height,
                            format=c.format,
                            bytes=c.bytes,
                            thumbnail=f"/api/images/{c.id}/thumbnail",
                        )
                        for c in g.images
                    ],
                )
                for g in groups
            ]
        )

    @app.post("/api/duplicates/dismiss", dependencies=guarded)
    async def dismiss(pair: DismissIn) -> dict[str, str]:
        """Record that two images are not duplicates; they are never reported again."""
        refs = []
        for ref in (pair.a, pair.b):
            if not IMAGE_ID.fullmatch(ref.id):
                raise HTTPException(404, "no such image")
            found = await run_in_threadpool(client.record, ref.id)
            if found is None:
                raise HTTPException(404, "no such image")
            if ref.path is not None and ref.path not in (found.path, *found.copies):
                raise HTTPException(400, "that path is not one of this image's")
            refs.append(ref.path if ref.path is not None and pair.a.id == pair.b.id else ref.id)
        await run_in_threadpool(client.dismiss, refs[0], refs[1])
        return {"status": "dismissed"}
