"""`indexer run --dry-run`: what a run will send and cost, before paying, through the real
CLI against the fake Gemini server (countTokens answered, nothing generated or written)."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import catalog_counts, garment_image, in_process
from tests.fake_gemini import FakeGemini

COLORS = ["red", "blue", "green"]


def photos(folder: Path, n: int, first: int = 0) -> Path:
    for i in range(first, first + n):
        garment_image(folder / f"{i:02d}.png", COLORS[i % 3], size=(200 + i, 240))
    return folder


def dry_run(*args: str) -> dict[str, Any]:
    done = in_process("indexer", "run", "--dry-run", "--json", *args)
    assert done.returncode == 0, done.stderr
    found = json.loads(done.stdout.strip().splitlines()[-1])
    assert isinstance(found, dict)
    return found


def billed(fake: FakeGemini) -> list[str]:
    return [r.endpoint for r in fake.requests if r.endpoint != "countTokens"]


def reported_tokens(stdout: str) -> int:
    found = re.search(r"tokens: ([\d,]+) \(", stdout)
    assert found, stdout
    return int(found.group(1).replace(",", ""))


def test_the_estimate_calls_no_model_writes_nothing_and_is_near_the_run(
    env: dict[str, str], fake: FakeGemini, tmp_path: Path
) -> None:
    folder = photos(tmp_path / "photos", 9)
    found = dry_run(str(folder))
    assert set(found) == {"images", "requests", "tokens", "cost_usd"}
    assert found["images"] == 9
    assert found["requests"]["generation"] == 9 and found["requests"]["embedding"] >= 1
    assert billed(fake) == []  # only countTokens, which is free
    status = in_process("indexer", "status", "--json")
    assert status.returncode == 2 and "no collection" in status.stderr  # nothing written

    run = in_process("indexer", "run", str(folder))
    assert run.returncode == 0, run.stderr
    tokens = found["tokens"]
    assert isinstance(tokens, dict)
    estimated = sum(tokens.values())
    assert abs(estimated - reported_tokens(run.stdout)) <= 0.2 * reported_tokens(run.stdout)
    assert fake.count("generateContent") == found["requests"]["generation"]

    status = in_process("indexer", "status", "--json")
    spent = json.loads(status.stdout)["usage"]
    assert 0 < spent["cost_usd"] <= found["cost_usd"]["online"]  # its descriptions, in USD
    assert "at online prices" in in_process("indexer", "status").stdout

    # Next time: the new images only, at this collection's own figures.
    photos(folder, 3, first=9)
    before = len(billed(fake))
    again = dry_run(str(folder))
    assert again["images"] == 3 and len(billed(fake)) == before
    assert again["requests"]["generation"] == 3


def test_batch_mode_halves_the_descriptions_and_prices_can_be_overridden(
    env: dict[str, str], fake: FakeGemini, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = photos(tmp_path / "photos", 4)
    shipped = dry_run(str(folder))["cost_usd"]
    assert isinstance(shipped, dict)
    assert 0 < shipped["batch"] < shipped["online"]
    batch = in_process("indexer", "run", "--dry-run", "--batch", str(folder))
    assert batch.returncode == 0 and "cost in batch mode: $" in batch.stdout, batch.stdout

    prices = tmp_path / "prices.toml"
    prices.write_text(
        'source = "our contract"\nas_of = "2026-12-01"\nbatch_share = 0.5\n'
        '[models."gemini-3.8-flash"]\ninput = 7.5\noutput = 37.5\n'
        '[models."gemini-embedding-2"]\ninput = 2.0\nimage_input = 4.5\n'
    )
    monkeypatch.setenv("INDEXER_PRICES", str(prices))
    tenfold = dry_run(str(folder))["cost_usd"]
    assert isinstance(tenfold, dict)
    assert tenfold["online"] == pytest.approx(10 * shipped["online"], rel=0.01)
    prices.write_text('[models."another-model"]\ninput = 1.0\n')
    unknown = in_process("indexer", "run", "--dry-run", "--json", str(folder))
    assert unknown.returncode == 0 and "cost: unknown" in unknown.stdout
    assert json.loads(unknown.stdout.strip().splitlines()[-1])["cost_usd"] == {
        "online": None,
        "batch": None,
    }


def test_a_budget_stops_the_run_before_it_is_spent_and_the_rest_stays_pending(
    env: dict[str, str], fake: FakeGemini, tmp_path: Path
) -> None:
    folder = photos(tmp_path / "photos", 12)
    whole = dry_run(str(folder))["cost_usd"]["online"]
    budget = whole * 5 / 12  # about five of the twelve
    done = in_process("indexer", "run", "--max-cost", f"{budget:.6f}", str(folder))
    assert done.returncode == 3, done.stderr
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith(f"error: the budget of ${budget:,.4f} is reached"), last
    indexed, pending, failed = catalog_counts()
    assert 0 < indexed <= 5 and pending == 12 - indexed and failed == 0
    assert fake.count("generateContent") == indexed  # no request past the budget was sent
    spent = json.loads(in_process("indexer", "status", "--json").stdout)["usage"]["cost_usd"]
    assert spent <= budget

    again = in_process("indexer", "run", str(folder))
    assert again.returncode == 0, again.stderr
    assert catalog_counts() == (12, 0, 0) and max(fake.paid().values()) == 1


def test_a_budget_submits_to_the_batch_api_only_what_it_covers(
    env: dict[str, str], fake: FakeGemini, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("INDEXER_BATCH_POLL_SECONDS", "0.1")
    fake.batch_seconds = 0.6
    folder = photos(tmp_path / "photos", 12)
    whole = dry_run("--batch", str(folder))["cost_usd"]["batch"]
    budget = whole * 4 / 12
    done = in_process("indexer", "run", "--batch", "--max-cost", f"{budget:.6f}", str(folder))
    assert done.returncode == 3, done.stderr
    assert "is reached" in done.stderr.strip().splitlines()[-1]
    submitted = len(fake.submitted_keys())
    assert 0 < submitted <= 4
    indexed, pending, failed = catalog_counts()
    assert (indexed, pending, failed) == (submitted, 12 - submitted, 0)


def test_a_batch_run_pays_the_batch_share_of_its_embeddings_too(
    env: dict[str, str], fake: FakeGemini, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Descriptions priced at nothing and embeddings dear: what a batch run may spend is
    then all embeddings, at the Batch API's share."""
    monkeypatch.setenv("INDEXER_BATCH_POLL_SECONDS", "0.1")
    fake.batch_seconds = 0.6
    prices = tmp_path / "prices.toml"
    prices.write_text(
        'source = "a test"\nbatch_share = 0.5\n[models."gemini-3.8-flash"]\ninput = 0.0\n'
        '[models."gemini-embedding-2"]\ninput = 1000.0\nimage_input = 1000.0\n'
    )
    monkeypatch.setenv("INDEXER_PRICES", str(prices))
    folder = photos(tmp_path / "photos", 8)
    cost = dry_run("--batch", str(folder))["cost_usd"]
    assert cost["online"] > 0 and cost["batch"] == pytest.approx(cost["online"] / 2, rel=0.01)
    budget = cost["batch"] * 4.5 / 8  # four images at the batch share (two at full price)
    done = in_process("indexer", "run", "--batch", "--max-cost", f"{budget:.6f}", str(folder))
    assert done.returncode == 3, done.stderr
    assert len(fake.submitted_keys()) == 4
    assert catalog_counts() == (4, 4, 0)
