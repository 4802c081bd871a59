"""Settings: one typed object read from environment variables and an optional `.env` file.

Every variable is documented in `.env.example`. `INDEXER_HOME` redirects all user data
(the embedded Chroma store and caches), which keeps tests hermetic.
"""

from __future__ import annotations

import ipaddress
import os
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

from pydantic import AliasChoices, Field, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from indexer.errors import ConfigError
from indexer.images import MAX_SIDE


def _default_home() -> Path:
    base = os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share"
    return Path(base) / "clothing-indexer"


def _env(*names: str) -> AliasChoices:
    return AliasChoices(*names)


GOOGLE_API_HOST = "generativelanguage.googleapis.com"
# What the embedding models accept as output_dimensionality.
MAX_EMBEDDING_DIM = 3072


def is_loopback_host(host: str) -> bool:
    """localhost or a loopback address (127.0.0.0/8, ::1)."""
    host = host.strip("[]").lower()
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_file=".env", extra="ignore", frozen=True)

    # --- Gemini ---
    google_api_key: str | None = Field(
        None, validation_alias=_env("GOOGLE_API_KEY", "GEMINI_API_KEY")
    )
    gemini_base_url: str | None = Field(None, validation_alias=_env("GEMINI_BASE_URL"))
    generation_model: str = Field("gemini-3.8-flash", validation_alias=_env("GEMINI_MODEL"))
    # Thinking tokens are billed; tagging a photo needs little of it.
    thinking_level: Literal["minimal", "low", "medium", "high"] = Field(
        "low", validation_alias=_env("GEMINI_THINKING_LEVEL")
    )
    media_resolution: Literal["low", "medium", "high"] = Field(
        "medium", validation_alias=_env("GEMINI_MEDIA_RESOLUTION")
    )
    embedding_model: str = Field(
        "gemini-embedding-2", validation_alias=_env("GEMINI_EMBEDDING_MODEL")
    )
    embedding_dim: int = Field(
        768, ge=128, le=MAX_EMBEDDING_DIM, validation_alias=_env("GEMINI_EMBEDDING_DIM")
    )

    # --- Chroma ---
    chroma_path: Path | None = Field(None, validation_alias=_env("CHROMA_PATH"))
    chroma_host: str | None = Field(None, validation_alias=_env("CHROMA_HOST"))
    chroma_port: int = Field(8000, validation_alias=_env("CHROMA_PORT"))
    chroma_ssl: bool = Field(False, validation_alias=_env("CHROMA_SSL"))
    # Trusted for the server's certificate besides the system's authorities (a private CA).
    chroma_ca_file: Path | None = Field(None, validation_alias=_env("CHROMA_CA_FILE"))
    chroma_token: str | None = Field(None, validation_alias=_env("CHROMA_TOKEN"))
    chroma_tenant: str = Field("default_tenant", validation_alias=_env("CHROMA_TENANT"))
    chroma_database: str = Field("default_database", validation_alias=_env("CHROMA_DATABASE"))
    collection: str = Field("clothing", validation_alias=_env("CHROMA_COLLECTION"))
    store_retry_seconds: float = Field(
        120.0, ge=0, validation_alias=_env("INDEXER_STORE_RETRY_SECONDS")
    )

    # --- query serve ---
    serve_token: str | None = Field(None, validation_alias=_env("QUERY_SERVE_TOKEN"))

    # --- Indexer ---
    home: Path = Field(default_factory=_default_home, validation_alias=_env("INDEXER_HOME"))
    vocabulary_file: Path | None = Field(None, validation_alias=_env("INDEXER_VOCABULARY"))
    prices_file: Path | None = Field(None, validation_alias=_env("INDEXER_PRICES"))
    models_path: Path | None = Field(None, validation_alias=_env("INDEXER_MODELS_DIR"))
    keyword_threshold: float = Field(
        0.7, ge=0.0, le=1.0, validation_alias=_env("INDEXER_KEYWORD_THRESHOLD")
    )
    image_vectors: bool = Field(True, validation_alias=_env("INDEXER_IMAGE_VECTORS"))
    # Facets whose keywords get a partition each (store/partitions.py): filters on them stay
    # fast at any catalog size, for a copy of each vector per facet. Empty: none.
    partition_facets_text: str = Field(
        "garment,season", validation_alias=_env("INDEXER_PARTITION_FACETS")
    )
    max_file_bytes: int = Field(
        200 * 1024 * 1024, ge=1024, validation_alias=_env("INDEXER_MAX_FILE_BYTES")
    )
    image_max_side: int = Field(MAX_SIDE, ge=64, validation_alias=_env("INDEXER_IMAGE_MAX_SIDE"))
    batch_size: int = Field(16, ge=1, le=100, validation_alias=_env("INDEXER_BATCH_SIZE"))
    concurrency: int = Field(8, ge=1, le=256, validation_alias=_env("INDEXER_CONCURRENCY"))
    generation_rpm: int = Field(60, ge=1, validation_alias=_env("INDEXER_GENERATION_RPM"))
    embedding_rpm: int = Field(300, ge=1, validation_alias=_env("INDEXER_EMBEDDING_RPM"))
    request_timeout: float = Field(60.0, gt=0, validation_alias=_env("INDEXER_REQUEST_TIMEOUT"))
    max_attempts: int = Field(6, ge=1, validation_alias=_env("INDEXER_MAX_ATTEMPTS"))
    retry_initial_wait: float = Field(
        1.0, ge=0, validation_alias=_env("INDEXER_RETRY_INITIAL_WAIT")
    )
    batch_poll_seconds: float = Field(
        10.0, gt=0, le=600, validation_alias=_env("INDEXER_BATCH_POLL_SECONDS")
    )
    retry_max_wait: float = Field(60.0, ge=0, validation_alias=_env("INDEXER_RETRY_MAX_WAIT"))

    @field_validator("thinking_level", "media_resolution", mode="before")
    @classmethod
    def _lower(cls, value: object) -> object:
        return value.strip().lower() if isinstance(value, str) else value

    @field_validator("collection")
    @classmethod
    def _own_name(cls, value: str) -> str:
        from indexer.store.layout import check_catalog_name

        return check_catalog_name(value)

    @field_validator("gemini_base_url")
    @classmethod
    def _safe_endpoint(cls, value: str | None) -> str | None:
        """The key and every photo go to this URL: plain HTTP only to this machine."""
        if not value:
            return None
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"{value!r} is not an http(s) URL")
        if parts.scheme == "http" and not is_loopback_host(parts.hostname):
            raise ValueError(
                f"{value!r} would send the API key unencrypted; use https, or http only to "
                "a loopback address"
            )
        return value

    @model_validator(mode="after")
    def _token_sent_safely(self) -> Settings:
        """The token opens the whole catalog: over plain HTTP only to this machine."""
        host = self.chroma_host
        if self.chroma_token and host and not self.chroma_ssl and not is_loopback_host(host):
            raise ValueError(
                f"CHROMA_TOKEN would go to {host} unencrypted; set CHROMA_SSL=true (the "
                "server behind TLS), or use a loopback address"
            )
        return self

    def endpoint_notice(self) -> str | None:
        """A sentence naming a non-Google endpoint and where its setting came from, or None."""
        if not self.gemini_base_url or urlsplit(self.gemini_base_url).hostname == GOOGLE_API_HOST:
            return None
        if os.environ.get("GEMINI_BASE_URL"):
            source = "the GEMINI_BASE_URL environment variable"
        else:
            source = f"GEMINI_BASE_URL in {Path('.env').absolute()}"
        return (
            f"sending the API key and images to {self.gemini_base_url}, not Google's API "
            f"(set by {source})"
        )

    def store_notice(self) -> str | None:
        """A sentence naming a Chroma server that receives the catalog (paths, captions,
        keywords, vectors) when it is another machine or was set by a `.env` file (one in
        the working folder may not be the user's own); None otherwise."""
        if not self.chroma_host:
            return None
        from_env = bool(os.environ.get("CHROMA_HOST"))
        if from_env and is_loopback_host(self.chroma_host):
            return None
        source = (
            "the CHROMA_HOST environment variable"
            if from_env
            else f"CHROMA_HOST in {Path('.env').absolute()}"
        )
        plain = (
            ""
            if self.chroma_ssl or is_loopback_host(self.chroma_host)
            else ", unencrypted (plain HTTP)"
        )
        return (
            f"sending image paths, captions, keywords and vectors to the Chroma server at "
            f"{self.chroma_location}{plain} (set by {source})"
        )

    @property
    def store_path(self) -> Path:
        return self.chroma_path if self.chroma_path is not None else self.home / "chroma"

    @property
    def models_dir(self) -> Path:
        """Local models exported to ONNX, keyed by the hash of their weights."""
        return self.models_path if self.models_path is not None else self.home / "models"

    @property
    def cache_dir(self) -> Path:
        return self.home / "cache"

    @property
    def partition_facets(self) -> tuple[str, ...]:
        return tuple(f.strip() for f in self.partition_facets_text.split(",") if f.strip())

    @property
    def uses_server(self) -> bool:
        return bool(self.chroma_host)

    @property
    def chroma_location(self) -> str:
        """Where the store is, as a user would name it."""
        if not self.uses_server:
            return str(self.store_path)
        scheme = "https" if self.chroma_ssl else "http"
        where = f"{scheme}://{self.chroma_host}:{self.chroma_port}"
        if (self.chroma_tenant, self.chroma_database) != ("default_tenant", "default_database"):
            where += f" (tenant {self.chroma_tenant}, database {self.chroma_database})"
        return where


def _first_alias(name: str) -> str:
    alias = Settings.model_fields[name].validation_alias
    assert isinstance(alias, AliasChoices)
    return str(alias.choices[0])


def load_settings(**overrides: object) -> Settings:
    """Read settings from the environment (and `.env`), with explicit overrides on top."""
    # Settings are read by alias only, so that a stray HOME or COLLECTION in the
    # environment never leaks in; overrides use field names and are mapped here.
    fields = Settings.model_fields
    unknown = sorted(set(overrides) - set(fields))
    if unknown:
        raise ConfigError(f"unknown settings: {', '.join(unknown)}")
    by_alias = {_first_alias(name): value for name, value in overrides.items()}
    try:
        return Settings.model_validate(by_alias)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc'])}: {err['msg']}" for err in exc.errors()
        )
        raise ConfigError(f"invalid settings: {problems}") from exc
