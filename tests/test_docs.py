"""The documentation stays true to the code: the configuration page is what the settings
generate, every setting is explained in `.env.example`, and the README stays short."""

from __future__ import annotations

import re
from pathlib import Path

from scripts.settings_doc import explained, render

ROOT = Path(__file__).resolve().parents[1]


def test_the_configuration_page_is_generated_from_the_settings() -> None:
    wanted = render((ROOT / ".env.example").read_text())
    assert (ROOT / "docs" / "configuration.md").read_text() == wanted, (
        "run: python scripts/settings_doc.py > docs/configuration.md"
    )


def test_every_setting_is_explained_in_the_example_file() -> None:
    from pydantic import AliasChoices

    from indexer.config import Settings

    notes = explained((ROOT / ".env.example").read_text())
    names = [
        str(info.validation_alias.choices[0])
        for info in Settings.model_fields.values()
        if isinstance(info.validation_alias, AliasChoices)
    ]
    assert [n for n in names if not notes.get(n)] == []


def test_the_readme_is_short_and_speaks_to_users() -> None:
    text = (ROOT / "README.md").read_text()
    assert len(text.splitlines()) <= 300
    for page in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:
        body = page.read_text()
        assert not re.search(r"\b[Ii]ssue \d+", body), page.name
        assert not re.search(r"(?<![`\w])I (?:did|would|tried|think|chose)\b", body), page.name
