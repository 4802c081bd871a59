"""Keyword filters as a caller writes them ("season=summer", and exclusions such as
"color=black"), checked against the vocabulary and put in its spelling, before any search
sees them."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from indexer.errors import QueryError
from indexer.vocabulary import Filters, Vocabulary

Where = Mapping[str, str | Sequence[str]]
# A record has a handful of keywords a facet: more AND terms than this rarely match anything,
# each (required or excluded) costs Chroma a clause, and Chroma Cloud takes at most 8
# predicates a query.
MAX_FILTER_TERMS = 8


def parse_where(terms: Sequence[str]) -> dict[str, list[str]]:
    """`["season=summer", "color=red"]` -> `{"season": ["summer"], "color": ["red"]}`."""
    where: dict[str, list[str]] = {}
    for term in terms:
        facet, sep, value = term.partition("=")
        if not sep or not facet.strip() or not value.strip():
            raise QueryError(f"filter {term!r} is not of the form FACET=VALUE")
        where.setdefault(facet.strip(), []).append(value.strip())
    return where


def checked(vocabulary: Vocabulary, where: Where | None, exclude: Where | None = None) -> Filters:
    """Validate filters against the vocabulary and return them in canonical spelling: the
    keywords a record must have (`where`) and those it must not (`exclude`)."""
    required, excluded = _canonical(vocabulary, where), _canonical(vocabulary, exclude)
    both = [(f, w) for f, words in required.items() for w in words if w in excluded.get(f, [])]
    if both:
        facet, word = both[0]
        raise QueryError(f"{facet}={word} is both required and excluded; nothing can match")
    terms = sum(len(words) for words in (*required.values(), *excluded.values()))
    if terms > MAX_FILTER_TERMS:
        raise QueryError(
            f"{terms} different filter terms; at most {MAX_FILTER_TERMS} are allowed "
            "(each term narrows the results: a record must have every keyword)"
        )
    return Filters(required, excluded)


def _canonical(vocabulary: Vocabulary, where: Where | None) -> dict[str, list[str]]:
    checked: dict[str, list[str]] = {}
    for facet, values in (where or {}).items():
        if facet not in vocabulary.facets:
            raise QueryError(
                f"unknown facet {facet!r};{_nearest(facet, list(vocabulary.facets))} "
                f"facets are: {', '.join(vocabulary.facets)}"
            )
        for value in [values] if isinstance(values, str) else list(values):
            keyword = vocabulary.canonical(facet, value)
            if keyword is None:
                words = vocabulary.facets[facet]
                raise QueryError(
                    f"{value!r} is not a {facet} keyword;{_nearest(value, words)} "
                    f"allowed: {', '.join(words)}"
                )
            kept = checked.setdefault(facet, [])
            if keyword not in kept:  # a repeated term filters nothing more
                kept.append(keyword)
    return checked


def _nearest(word: str, choices: Sequence[str]) -> str:
    """ " did you mean 'summer'?" for a misspelling close to one of `choices`, else ""."""
    import difflib

    by_fold = {c.casefold(): c for c in choices}
    close = difflib.get_close_matches(word.casefold(), list(by_fold), n=1, cutoff=0.6)
    return f" did you mean {by_fold[close[0]]!r}?" if close else ""
