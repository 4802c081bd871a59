"""A run's spending cap, `indexer run --max-cost USD`: images are sent to be described only
as far as what the run has spent (the tokens its answers reported), what the batches in
flight may still cost, and what they may cost fits within the budget. An image may cost its
prompt as counted (countTokens, free), output and thinking as this run's answers average (a
first-run guess until one is in), and its embeddings as estimated (their answers report no
tokens); in a batch run, which sends both through the Batch API, the batch share of that."""

from __future__ import annotations

import math
import threading
from collections.abc import Callable

from indexer.errors import BudgetReachedError
from indexer.prices import Prices, description_tokens
from indexer.records import Usage


class Budget:
    def __init__(
        self,
        limit_usd: float,
        prices: Prices,
        generation_model: str,
        embedding_model: str,
        thinking_level: str,
        pictures: bool,
        batch: bool = False,
    ) -> None:
        self.limit = limit_usd
        self._share = prices.batch_share if batch else 1.0
        self._prices = prices
        self._model = generation_model
        self._thinking_level = thinking_level
        self._embedding = prices.image_embeddings(embedding_model, pictures) or 0.0
        self._reserved = 0.0
        self._lock = threading.Lock()
        self._prompt_tokens: int | None = None  # one description's, counted once a run

    def count_prompt(self, count: Callable[[], int]) -> None:
        """One description's prompt tokens, from `count` (countTokens) the first time."""
        if self._prompt_tokens is None:
            self._prompt_tokens = count()

    def admit(self, wanted: int, usage: Usage) -> tuple[int, float]:
        """How many of `wanted` images fit now, and what is reserved for them (give it back
        with `done` once they are answered, or, in a batch run, never: a job is paid)."""
        with self._lock:
            per = (self._description(usage) + self._embedding) * self._share
            room = self.limit - self.spent(usage) - self._reserved
            fit = wanted if per <= 0 else max(0, min(wanted, math.floor(room / per + 1e-9)))
            self._reserved += fit * per
            return fit, fit * per

    def done(self, reserved: float) -> None:
        """The images reserved for are answered: their usage now counts instead."""
        with self._lock:
            self._reserved -= reserved

    def spent(self, usage: Usage) -> float:
        """What the answers so far cost: their tokens, and their images' embeddings."""
        described = self._prices.generation(
            self._model, usage.prompt_tokens, usage.output_tokens, usage.thinking_tokens
        )
        embedded = usage.generation_requests * self._embedding
        return ((described or 0.0) + embedded) * self._share

    def reached(self, usage: Usage, sent: int, done: str = "described") -> BudgetReachedError:
        return BudgetReachedError(
            f"the budget of ${self.limit:,.4f} is reached: {sent} image(s) {done} "
            f"for about ${self.spent(usage) + self._reserved:,.4f}; the rest stay pending "
            "(run again with a larger --max-cost)"
        )

    def _description(self, usage: Usage) -> float:
        output, thinking = description_tokens(usage, self._thinking_level)
        prompt = self._prompt_tokens or 0
        return self._prices.generation(self._model, prompt, output, thinking) or 0.0
