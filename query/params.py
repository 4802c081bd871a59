"""The query parameters the gallery's JSON API shares, declared once: keyword filters, a page,
a score floor. FastAPI reads each group from the query string of every route that asks."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Query

from query.filters import parse_where

WHERE = "FACET=VALUE, e.g. color=red; repeat to AND."
EXCLUDE = "FACET=VALUE to leave out, e.g. color=black; repeatable."


class Filtering:
    """`where=` terms a result must have, `exclude=` terms it must not."""

    def __init__(
        self,
        where: Annotated[list[str], Query(description=WHERE)] = [],  # noqa: B006 - copied
        exclude: Annotated[list[str], Query(description=EXCLUDE)] = [],  # noqa: B006
    ) -> None:
        self.where, self.exclude = where, exclude

    @property
    def terms(self) -> tuple[dict[str, list[str]], dict[str, list[str]]]:
        return parse_where(self.where), parse_where(self.exclude)


class Ranked:
    """A page of ranked results, none below `min_score`."""

    def __init__(
        self,
        limit: Annotated[int, Query(ge=1, le=500)] = 24,
        offset: Annotated[int, Query(ge=0, description="Skip the first hits: the next page.")] = 0,
        min_score: Annotated[
            float | None,
            Query(description="Leave out hits scoring below this (cosine similarity)."),
        ] = None,
    ) -> None:
        self.limit, self.offset, self.min_score = limit, offset, min_score

    @property
    def asked(self) -> dict[str, Any]:
        """As the client's search methods take them."""
        return {"limit": self.limit, "offset": self.offset, "min_score": self.min_score}
