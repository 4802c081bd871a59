"""The gallery's guards, as ASGI middleware and helpers: what the server refuses before a
route runs, and the headers every response carries.

- Hosts: a Host header other than the listening address or a loopback name answers 400
  (Starlette's TrustedHostMiddleware, fed `allowed_hosts`), so a DNS-rebinding page cannot
  reach the gallery under its own name.
- Cross-site requests: an API request whose Origin (or Referer) is another site answers 403,
  so a web page cannot make the browser search or upload on its behalf.
- Bodies: cut off at the size limit while they are read (413), never spooled whole.
- Headers: nosniff, no framing, and a Content-Security-Policy (the page's inline script and
  style allowed by hash only).
- Uploads: at most MAX_UPLOAD_BYTES, and a header declaring more than MAX_UPLOAD_PIXELS
  pixels is refused before anything is decoded (`checked_upload`).
- Logs: access tokens in request lines are redacted.
"""

from __future__ import annotations

import base64
import copy
import hashlib
import io
import logging
import re
from typing import Any
from urllib.parse import unquote_plus, urlsplit

from PIL import Image, UnidentifiedImageError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from indexer.images import DECODED_FORMATS

MAX_UPLOAD_BYTES = 20 * 1024 * 1024
# An upload is decoded in full; 40 megapixels (say 8000x5000) is far above any phone photo
# and keeps one decode near 120 MB.
MAX_UPLOAD_PIXELS = 40_000_000
# The multipart envelope around the file: part headers, boundary, nothing more.
ENVELOPE_BYTES = 64 * 1024
_LOOPBACK_NAMES = ["localhost", "127.0.0.1", "[::1]"]
_WILDCARD_HOSTS = {"0.0.0.0", "::", ""}


def allowed_hosts(host: str) -> list[str]:
    """Host headers the server answers: its own address and the loopback names.

    On a wildcard address the machine's names are not known here; a token is required
    there (check_exposure), which a DNS-rebinding page cannot present."""
    if host in _WILDCARD_HOSTS:
        return ["*"]
    own = f"[{host}]" if ":" in host else host
    return [own.lower(), *_LOOPBACK_NAMES]


def _inline_hashes(html: str, tag: str) -> str:
    blocks = re.findall(rf"<{tag}>(.*?)</{tag}>", html, flags=re.S)
    return " ".join(
        "'sha256-" + base64.b64encode(hashlib.sha256(b.encode()).digest()).decode() + "'"
        for b in blocks
    )


def page_policy(html: str) -> str:
    """A Content-Security-Policy that lets the page run its own inline script and style
    (by hash) and talk to its own origin, and nothing else."""
    return (
        f"default-src 'none'; script-src {_inline_hashes(html, 'script')}; "
        f"style-src {_inline_hashes(html, 'style')}; img-src 'self' blob: data:; "
        "connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
    )


# /docs and /redoc load their viewers from a CDN and start them with an inline script.
_DOCS_POLICY = (
    "default-src 'none'; script-src 'self' 'unsafe-inline' https://cdn.jsdelivr.net; "
    "style-src 'self' 'unsafe-inline' https://cdn.jsdelivr.net https://fonts.googleapis.com; "
    "font-src https://fonts.gstatic.com; img-src 'self' data: https://fastapi.tiangolo.com "
    "https://cdn.redoc.ly; connect-src 'self'; worker-src blob:; frame-ancestors 'none'"
)
_API_POLICY = "default-src 'none'; frame-ancestors 'none'"


class TooLarge(StarletteHTTPException):
    """Raised from the body stream mid-read; FastAPI passes HTTP exceptions through body
    parsing, so the client gets 413 and the rest of the body is never read."""

    def __init__(self) -> None:
        super().__init__(413, too_large_message())


class Guard:
    """Pure ASGI middleware: security headers on every response, cross-site API requests
    refused, and request bodies cut off at the size limit while they are being read."""

    def __init__(self, app: ASGIApp, page_csp: str, max_body: int) -> None:
        self.app = app
        self.page_csp = page_csp
        self.max_body = max_body

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
        path: str = scope["path"]
        if path.startswith(("/api/", "/openapi.json", "/docs", "/redoc")) and _cross_site(
            headers, scope
        ):
            await self._plain(send, 403, "cross-site request refused")
            return
        declared = headers.get("content-length", "")
        if declared.isdigit() and int(declared) > self.max_body:
            await self._plain(send, 413, too_large_message())
            return
        csp = self.page_csp if path == "/" else _API_POLICY
        if path.startswith(("/docs", "/redoc")):
            csp = _DOCS_POLICY
        received = 0
        started = over = False

        async def counted_receive() -> Message:
            nonlocal received, over
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_body:
                    over = True
                    raise TooLarge
            return message

        async def send_with_headers(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                message["headers"] = [
                    *message.get("headers", []),
                    (b"x-content-type-options", b"nosniff"),
                    (b"x-frame-options", b"DENY"),
                    (b"referrer-policy", b"same-origin"),
                    (b"content-security-policy", csp.encode()),
                    # The rest of an oversized body is never read: the connection goes.
                    *([(b"connection", b"close")] if over else []),
                ]
            await send(message)

        try:
            await self.app(scope, counted_receive, send_with_headers)
        except TooLarge:
            if not started:
                await self._plain(send, 413, too_large_message())

    @staticmethod
    async def _plain(send: Send, status: int, text: str) -> None:
        body = text.encode()
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [
                    (b"content-type", b"text/plain; charset=utf-8"),
                    (b"content-length", str(len(body)).encode()),
                    (b"connection", b"close"),
                    (b"x-content-type-options", b"nosniff"),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})


def too_large_message() -> str:
    return f"upload larger than {MAX_UPLOAD_BYTES // 2**20} MiB"


def _cross_site(headers: dict[str, str], scope: Scope) -> bool:
    """True when the request says it comes from a page of another origin.

    Browsers send Origin on cross-origin fetches and form posts, and a Referer (its origin at
    least) on most of the rest; API clients such as curl send neither and are let through."""
    own_host = headers.get("host", "").lower()
    claimed = headers.get("origin") or headers.get("referer")
    if not claimed:
        return False
    if claimed == "null":  # sandboxed frames, file:// pages
        return True
    parts = urlsplit(claimed)
    return parts.netloc.lower() != own_host or parts.scheme != scope.get("scheme", "http")


def access_log_config() -> dict[str, Any]:
    """uvicorn's logging, with access tokens redacted from logged request lines."""
    from uvicorn.config import LOGGING_CONFIG

    config = copy.deepcopy(LOGGING_CONFIG)
    config.setdefault("filters", {})["redact_token"] = {"()": RedactToken}
    config["handlers"]["access"]["filters"] = ["redact_token"]
    return config


class RedactToken(logging.Filter):
    """Every query parameter that the server reads as `token` is redacted, however its name
    is spelt in the request line (`%74oken=` is `token=` once decoded)."""

    _PARAM = re.compile(r"(?<=[?&])([^=&\s]*)=([^&\s]*)")

    @classmethod
    def _redacted(cls, match: re.Match[str]) -> str:
        name = unquote_plus(match.group(1))
        return f"{match.group(1)}=[redacted]" if name == "token" else match.group(0)

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple):
            record.args = tuple(
                self._PARAM.sub(self._redacted, a) if isinstance(a, str) else a for a in record.args
            )
        return True


def checked_upload(data: bytes) -> bytes:
    """Refuse an upload whose header declares more pixels than an upload may decode to."""
    try:
        with Image.open(io.BytesIO(data), formats=DECODED_FORMATS) as img:
            width, height = img.size
    except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError):
        return data  # the client's decoder reports what is wrong with it
    if width * height > MAX_UPLOAD_PIXELS:
        raise StarletteHTTPException(
            413, f"image too large: {width}x{height} pixels (at most {MAX_UPLOAD_PIXELS:,})"
        )
    return data
