"""A fake Gemini API on 127.0.0.1 that speaks the real REST shapes.

It serves `models/{m}:generateContent`, `:embedContent`, `:batchEmbedContents` and
`:countTokens` under `/v1` and `/v1beta`, checks the API key, and records every request. Its
"vision" sees the dominant colour of the uploaded image and answers from a per-colour
script; its "embeddings" are deterministic bag-of-concepts vectors in which listed synonyms
(purple/violet, tee/T-shirt, ...) are close and unrelated words are near-orthogonal. Faults
can be queued per endpoint: 429 (a per-minute quota, its delay in a RetryInfo detail and no
Retry-After header, as the real API answers), 500, 503, timeouts, truncated bodies,
malformed model output, safety blocks, empty candidates and wrong embedding sizes. A per-day
quota (`daily_quota`) answers every request past it with the real per-day 429: a
QuotaFailure naming the per-day quotaId and a RetryInfo delay of hours.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import re
import threading
import time
from collections import Counter, deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import numpy as np
from PIL import Image

API_KEY = "test-key"

PALETTE = {
    "red": (200, 30, 30),
    "green": (30, 160, 60),
    "blue": (30, 60, 200),
    "yellow": (230, 210, 40),
    "orange": (240, 140, 20),
    "violet": (140, 60, 190),
    "black": (15, 15, 15),
    "white": (240, 240, 240),
    "magenta": (230, 0, 230),
    "cyan": (0, 220, 230),
    "grey": (128, 128, 128),
}

# Concepts the fake embedding model knows to be the same thing.
SYNONYMS = {
    "purple": "violet",
    "lilac": "violet",
    "tee": "t-shirt",
    "tees": "t-shirt",
    "navy": "blue",
    "crimson": "red",
    "scarlet": "red",
    "sneakers": "shoes",
    "trainers": "shoes",
    "jumper": "sweater",
    "pullover": "sweater",
    "trousers": "pants",
    "gown": "dress",
    "dresses": "dress",
}
STOPWORDS = {"a", "an", "the", "for", "of", "and", "with", "in", "on", "to", "is"}
FAULT_KINDS = {
    "429",
    "500",
    "503",
    "timeout",
    "truncated",
    "malformed",
    "blocked",
    "safety",
    "empty",
    "wrong_dim",
    "off_vocab",
}


MULTIMODAL_EMBEDDING_MODELS = ("gemini-embedding-2",)
MAX_IMAGES_PER_EMBED_REQUEST = 6
# Tokens an image costs at each media resolution (Gemini 3 accounting), and thinking tokens
# spent at each thinking level.
IMAGE_TOKENS = {"MEDIA_RESOLUTION_LOW": 280, "MEDIA_RESOLUTION_MEDIUM": 560, "": 1120}
IMAGE_TOKENS["MEDIA_RESOLUTION_HIGH"] = 1120
THINKING_TOKENS = {"MINIMAL": 0, "LOW": 120, "MEDIUM": 480, "HIGH": 1500, "": 1500}
PROMPT_TOKENS = 300  # system instruction and vocabulary
# The documented task instructions of gemini-embedding-2: "task: ... | query: X" and
# "title: ... | text: X". The model reads them as instructions, not as content.
TASK_PREFIX = re.compile(r"^(?:task: ([^|]*?) \| query: |title: [^|]*? \| text: )")


def task_of(text: str) -> tuple[str, str]:
    """(task, content) of a prefixed text: ("search result", "red dress"); documents are
    ("document", ...), unprefixed text ("", text)."""
    match = TASK_PREFIX.match(text)
    if match is None:
        return "", text
    return (match.group(1) or "document"), text[match.end() :]


def nearest_color(rgb: tuple[float, float, float]) -> str:
    return min(
        PALETTE, key=lambda c: sum((a - b) ** 2 for a, b in zip(PALETTE[c], rgb, strict=True))
    )


def _unit_for(key: str, dim: int) -> np.ndarray:
    seed = int.from_bytes(hashlib.sha256(key.encode()).digest()[:8], "little")
    v = np.random.default_rng(seed).standard_normal(dim)
    return v / np.linalg.norm(v)


def tokens(text: str) -> list[str]:
    text = text.lower()
    found: list[str] = []
    for phrase in (p for p in SYNONYMS if " " in p):
        if phrase in text:
            found.append(phrase)
            text = text.replace(phrase, " ")
    found += [t for t in re.findall(r"[a-z0-9][a-z0-9-]*", text) if t not in STOPWORDS]
    return found


def fake_embedding(text: str, dim: int) -> list[float]:
    vec = np.zeros(dim)
    for token in tokens(text) or ["<empty>"]:
        concept = SYNONYMS.get(token, token)
        # Mostly the concept, a little the word itself: synonyms score about 0.8.
        vec += 0.9 * _unit_for("c:" + concept, dim) + 0.436 * _unit_for("w:" + token, dim)
    return (vec / np.linalg.norm(vec)).tolist()


@dataclass
class Recorded:
    endpoint: str
    model: str
    body: dict[str, Any]
    image_size: tuple[int, int] | None = None
    color: str | None = None
    thinking_level: str = ""
    media_resolution: str = ""
    digest: str = ""  # sha256 of the image described
    arrived: float = field(default_factory=time.monotonic)
    answered: bool = False  # a 200 with a description: what the real API bills


@dataclass
class Fault:
    kind: str
    retry_after: float | None = None


@dataclass
class FakeBatch:
    name: str
    display_name: str
    model: str
    created: float
    requests: list[dict[str, Any]]  # {"key", "request"} each
    input_file: str | None = None
    outcome: str = "succeeded"
    cancelled: bool = False
    output: dict[str, Any] | None = None
    embeds: bool = False  # an asyncBatchEmbedContent job: answers are embeddings

    def state(self, now: float, duration: float) -> str:
        if self.cancelled:
            return "BATCH_STATE_CANCELLED"
        age = now - self.created
        if age < duration / 2:
            return "BATCH_STATE_PENDING"
        if age < duration:
            return "BATCH_STATE_RUNNING"
        return {"expired": "BATCH_STATE_EXPIRED", "failed": "BATCH_STATE_FAILED"}.get(
            self.outcome, "BATCH_STATE_SUCCEEDED"
        )


@dataclass
class FakeGemini:
    """Start with `with FakeGemini() as fake:`; point GEMINI_BASE_URL at `fake.base_url`."""

    timeout_sleep: float = 3.0
    latency: dict[str, float] = field(default_factory=dict)
    # A request to an endpoint listed here waits until its event is set (at most 60 s).
    gates: dict[str, threading.Event] = field(default_factory=dict)
    # What the model "sees" in a given image (sha256 of the bytes sent), overriding the
    # per-colour script: benchmarks register the true labels of real photos here.
    by_image: dict[str, Any] = field(default_factory=dict)
    by_color: dict[str, Any] = field(default_factory=dict)
    # --- Batch API (v1beta only, as the real service) ---
    batch_seconds: float = 1.0  # pending for the first half, running for the second
    # While set, every job stays running (a test's "the job is still open"), whatever its age.
    batches_held: bool = False
    batch_outcomes: deque[str] = field(default_factory=deque)  # next jobs: expired, failed
    # The next embedding jobs': expired, failed, or forgotten (404 once done).
    embedding_outcomes: deque[str] = field(default_factory=deque)
    batch_errors: set[str] = field(default_factory=set)  # request keys answered with an error
    batches: dict[str, FakeBatch] = field(default_factory=dict)
    batches_made: int = 0
    forgotten: list[FakeBatch] = field(default_factory=list)  # paid for, then forgotten
    files: dict[str, bytes] = field(default_factory=dict)
    requests: list[Recorded] = field(default_factory=list)
    # A response schema with this many enum values or more is refused, as the real API
    # refuses one from about 240 ("too many states for serving").
    max_schema_enums: int = 240
    # Requests an endpoint answers per "day"; past that, the per-day 429 (DAILY_RESET away).
    daily_quota: dict[str, int] = field(default_factory=dict)
    _used_today: Counter[str] = field(default_factory=Counter)
    _faults: dict[str, deque[Fault]] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _server: ThreadingHTTPServer | None = None

    # --- control ---

    def __enter__(self) -> FakeGemini:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self, port: int = 0) -> None:
        handler = type("Handler", (_Handler,), {"fake": self})
        self._server = ThreadingHTTPServer(("127.0.0.1", port), handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()

    @property
    def base_url(self) -> str:
        assert self._server is not None
        return f"http://127.0.0.1:{self._server.server_port}"

    def inject(
        self, endpoint: str, kind: str, count: int = 1, retry_after: float | None = None
    ) -> None:
        """Queue `count` faults for the next requests to `endpoint`."""
        assert kind in FAULT_KINDS, kind
        with self._lock:
            queue = self._faults.setdefault(endpoint, deque())
            queue.extend(Fault(kind, retry_after) for _ in range(count))

    def _outcomes(self, embeds: bool) -> deque[str]:
        return self.embedding_outcomes if embeds else self.batch_outcomes

    def forget_batch(self, name: str) -> None:
        """The API no longer knows the job (deleted, past retention): 404 from now on."""
        with self._lock:
            self.forgotten.append(self.batches.pop(name))

    def submitted_keys(self) -> list[str]:
        """The key of every request ever submitted in a description job (repeats included)."""
        with self._lock:
            jobs = [*self.forgotten, *self.batches.values()]
            return [r["key"] for b in jobs if not b.embeds for r in b.requests]

    def description_jobs(self) -> dict[str, FakeBatch]:
        """The description jobs the API knows, by name."""
        with self._lock:
            return {n: b for n, b in self.batches.items() if not b.embeds}

    def embedding_jobs(self) -> list[FakeBatch]:
        """Every embedding job ever created, oldest first."""
        with self._lock:
            jobs = [*self.forgotten, *self.batches.values()]
            return sorted((b for b in jobs if b.embeds), key=lambda b: b.name)

    def batch_embedded(self) -> Counter[str]:
        """How many times each text (task prefix removed) and each picture (by digest) was
        sent in an embedding job."""
        sent: Counter[str] = Counter()
        for job in self.embedding_jobs():
            for item in job.requests:
                sent.update(_embedded_items(item["request"]))
        return sent

    def online_embedded(self, task: str | None = None) -> Counter[str]:
        """The same for embedContent and batchEmbedContents requests (the online path); with
        `task`, only texts of that task, and no pictures."""
        sent: Counter[str] = Counter()
        with self._lock:
            requests = [r for r in self.requests if r.endpoint in ONLINE_EMBEDDING]
        for rec in requests:
            for request in rec.body.get("requests") or [rec.body]:
                sent.update(_embedded_items(request, task))
        return sent

    def described(self) -> Counter[str]:
        """How many times each image (by the digest of the bytes sent) was described."""
        with self._lock:
            return Counter(r.digest for r in self.requests if r.endpoint == "generateContent")

    def paid(self) -> Counter[str]:
        """How many descriptions of each image (by digest) the API answered: billed ones."""
        with self._lock:
            return Counter(
                r.digest for r in self.requests if r.endpoint == "generateContent" and r.answered
            )

    def count(self, endpoint: str) -> int:
        with self._lock:
            return sum(1 for r in self.requests if r.endpoint == endpoint)

    def embedded_texts(self) -> list[tuple[str, str]]:
        """(task, text) of every text sent for embedding: the taskType field, or the task
        written into the text (prefix removed) for multimodal models."""
        with self._lock:
            out = []
            for r in self.requests:
                if r.endpoint == "batchEmbedContents":
                    reqs = r.body.get("requests", [])
                elif r.endpoint == "embedContent":
                    reqs = [r.body]
                else:
                    continue
                for q in reqs:
                    text = "".join(p.get("text", "") for p in q["content"]["parts"])
                    task, content = task_of(text)
                    out.append((q.get("taskType", "") or task, content))
            return out

    def _next_fault(self, endpoint: str) -> Fault | None:
        with self._lock:
            queue = self._faults.get(endpoint)
            return queue.popleft() if queue else None

    def _spent_today(self, endpoint: str) -> bool:
        """Whether this request is past the endpoint's per-day quota (counting it if not)."""
        with self._lock:
            if endpoint not in self.daily_quota:
                return False
            if self._used_today[endpoint] >= self.daily_quota[endpoint]:
                return True
            self._used_today[endpoint] += 1
            return False

    def new_day(self) -> None:
        """The per-day quotas are back."""
        with self._lock:
            self._used_today.clear()

    def _record(self, rec: Recorded) -> None:
        with self._lock:
            self.requests.append(rec)

    # --- model behaviour ---

    def describe(self, color: str, schema: dict[str, Any] | None, digest: str = "") -> Any:
        scripted = self.by_image.get(digest) or self.by_color.get(color)
        if scripted is not None:
            return scripted
        facets = (schema or {}).get("properties", {}).get("keywords", {}).get("properties", {})
        # Held to enums, the model spells the vocabulary's keyword; free, it says it its way.
        free = bool(facets) and "enum" not in facets.get("garment", {}).get("items", {"enum": 0})
        keywords = {"garment": ["tee" if free else "T-shirt"], "color": [color]}
        keywords = {k: v for k, v in keywords.items() if not facets or k in facets}
        return {"keywords": keywords, "caption": f"A {color} cotton T-shirt."}


DAILY_RESET = 48064.0  # seconds: what the real API says when a day's quota is spent
QUOTA_IDS = {
    # endpoint: (per-minute quotaId, per-day quotaId, quotaMetric), as the real API names them
    "generateContent": (
        "GenerateRequestsPerMinutePerProjectPerModel-FreeTier",
        "GenerateRequestsPerDayPerProjectPerModel-FreeTier",
        "generativelanguage.googleapis.com/generate_content_free_tier_requests",
    ),
    "embedContent": (
        "EmbedContentRequestsPerMinutePerProjectPerModel-FreeTier",
        "EmbedContentRequestsPerDayPerProjectPerModel-FreeTier",
        "generativelanguage.googleapis.com/embed_content_free_tier_requests",
    ),
}
QUOTA_IDS["batchEmbedContents"] = QUOTA_IDS["embedContent"]


def _quota_body(endpoint: str, model: str, daily: bool, delay: float | None, limit: int) -> bytes:
    """The real API's 429: QuotaFailure, Help and RetryInfo details, the delay in the body."""
    per_minute, per_day, metric = QUOTA_IDS.get(endpoint, QUOTA_IDS["generateContent"])
    violation = {
        "quotaMetric": metric,
        "quotaId": per_day if daily else per_minute,
        "quotaDimensions": {"location": "global", "model": model},
        "quotaValue": str(limit),
    }
    details: list[dict[str, Any]] = [
        {"@type": "type.googleapis.com/google.rpc.QuotaFailure", "violations": [violation]},
        {
            "@type": "type.googleapis.com/google.rpc.Help",
            "links": [
                {
                    "description": "Learn more about Gemini API quotas",
                    "url": "https://ai.google.dev/gemini-api/docs/rate-limits",
                }
            ],
        },
    ]
    if delay is not None:
        details.append(
            {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": f"{delay:g}s"}
        )
    message = (
        "You exceeded your current quota, please check your plan and billing details. "
        f"* Quota exceeded for metric: {metric}, limit: {limit}, model: {model}"
    )
    error = {"code": 429, "message": message, "status": "RESOURCE_EXHAUSTED", "details": details}
    return json.dumps({"error": error}).encode()


def _error_body(code: int, status: str, message: str, retry_after: float | None = None) -> bytes:
    error: dict[str, Any] = {"code": code, "message": message, "status": status}
    if retry_after is not None:
        error["details"] = [
            {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": f"{retry_after:g}s"}
        ]
    return json.dumps({"error": error}).encode()


TOO_MANY_STATES = (
    "The specified schema produces a constraint that has too many states for serving.  "
    "Typical causes of this error are schemas with lots of text (for example, very long "
    "property or enum names), schemas with long array length limits (especially when "
    "nested), or schemas using complex value matchers (for example, integers or numbers with "
    "minimum/maximum bounds or strings with complex formats like date-time)"
)


def _enum_values(schema: Any) -> int:
    """How many enum values a response schema lists, however deep."""
    if isinstance(schema, dict):
        own = len(schema["enum"]) if isinstance(schema.get("enum"), list) else 0
        return own + sum(_enum_values(v) for k, v in schema.items() if k != "enum")
    if isinstance(schema, list):
        return sum(_enum_values(v) for v in schema)
    return 0


def _digest_of(body: dict[str, Any]) -> str:
    """sha256 of the image a request carries, known on arrival (a refused request too)."""
    for content in body.get("contents", []) if isinstance(body, dict) else []:
        for part in content.get("parts", []) if isinstance(content, dict) else []:
            media = _inline(part) if isinstance(part, dict) else None
            if media is not None:
                try:
                    return hashlib.sha256(_decoded(media["data"])).hexdigest()
                except (ValueError, TypeError, KeyError):
                    return ""
    return ""


def _inline(part: dict[str, Any]) -> dict[str, Any] | None:
    """A part's inline media. Proto JSON accepts the field's own name as well as
    lowerCamelCase, and the SDK sends `inline_data` inside embedding requests."""
    found = part.get("inlineData", part.get("inline_data"))
    return found if isinstance(found, dict) else None


ONLINE_EMBEDDING = ("embedContent", "batchEmbedContents")


def _embedded_items(request: dict[str, Any], task: str | None = None) -> list[str]:
    """What one embedding request embeds: its text (task prefix removed) and the digest of
    each picture; with `task`, only a text of that task."""
    items = []
    for part in request.get("content", {}).get("parts", []):
        media = _inline(part)
        if media is not None and task is None:
            items.append(hashlib.sha256(_decoded(media["data"])).hexdigest())
        elif part.get("text"):
            found, text = task_of(part["text"])
            if task is None or (request.get("taskType") or found) == task:
                items.append(text)
    return items


def _decoded(data: str) -> bytes:
    # The API takes standard or URL-safe base64, padded or not.
    return base64.urlsafe_b64decode(
        data.replace("+", "-").replace("/", "_") + "=" * (-len(data) % 4)
    )


def _seen(image: bytes) -> tuple[str, tuple[int, int]]:
    """The fake's vision: the picture's dominant colour, and its size."""
    with Image.open(io.BytesIO(image)) as img:
        mean = tuple(np.asarray(img.convert("RGB"), dtype=np.float64).mean(axis=(0, 1)))
        return nearest_color(mean), img.size


class _Handler(BaseHTTPRequestHandler):
    fake: FakeGemini
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:  # quiet test output
        pass

    def _send(
        self,
        code: int,
        body: bytes,
        headers: dict[str, str] | None = None,
        content_type: str = "application/json; charset=UTF-8",
    ) -> None:
        try:
            self.send_response(code)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            for k, v in (headers or {}).items():
                self.send_header(k, v)
            self.end_headers()
            self.wfile.write(body)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up (timeout test)

    def do_GET(self) -> None:
        path = self.path.split("?")[0]
        if not self._authorised():
            return
        if m := re.fullmatch(r"/v1beta/batches/([\w-]+)", path):
            self._batch_get(m.group(1))
        elif path == "/v1beta/batches":
            self._batch_list()
        elif m := re.fullmatch(r"/v1beta/files/([\w-]+):download", path):
            data = self.fake.files.get(f"files/{m.group(1)}")
            if data is None:
                self._send(404, _error_body(404, "NOT_FOUND", "no such file"))
            else:
                self._send(200, data, content_type="application/octet-stream")
        else:
            self._send(404, _error_body(404, "NOT_FOUND", f"no route {path}"))

    def _authorised(self) -> bool:
        if self.headers.get("x-goog-api-key") != API_KEY:
            self._send(400, _error_body(400, "INVALID_ARGUMENT", "API key not valid."))
            return False
        return True

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length)
        path = self.path.split("?")[0]
        if path.startswith(("/upload/", "/upload-session/", "/v1beta/batches/")) or path.endswith(
            (":batchGenerateContent", ":asyncBatchEmbedContent")
        ):
            # An upload session URL is a capability URL, as Google's: it needs no key.
            if path.startswith("/upload-session/") or self._authorised():
                self._batch_post(path, raw)
            return
        match = re.fullmatch(r"/v1(?:beta)?/models/([^/:]+):(\w+)", path)
        if not match:
            self._send(404, _error_body(404, "NOT_FOUND", f"no route {self.path}"))
            return
        model, endpoint = match.groups()
        try:
            body = json.loads(raw)
        except ValueError:
            self._send(400, _error_body(400, "INVALID_ARGUMENT", "Invalid JSON payload."))
            return
        rec = Recorded(endpoint, model, body, digest=_digest_of(body))
        self.fake._record(rec)  # on arrival, so a request the client gave up on counts too
        if self.headers.get("x-goog-api-key") != API_KEY:
            self._send(400, _error_body(400, "INVALID_ARGUMENT", "API key not valid."))
            return
        handler = {
            "generateContent": self._generate,
            "embedContent": self._embed_one,
            "batchEmbedContents": self._embed_batch,
            "countTokens": self._count_tokens,
        }.get(endpoint)
        if handler is None:
            self._send(404, _error_body(404, "NOT_FOUND", f"unknown method {endpoint}"))
            return
        fault = self.fake._next_fault(endpoint)
        gate = self.fake.gates.get(endpoint)
        if gate is not None:
            gate.wait(60)
        time.sleep(self.fake.latency.get(endpoint, 0.0))
        if fault is not None and self._transport_fault(fault, endpoint, model):
            return
        if self.fake._spent_today(endpoint):
            limit = self.fake.daily_quota[endpoint]
            self._send(429, _quota_body(endpoint, model, True, DAILY_RESET, limit))
            return
        handler(rec, fault)

    def _transport_fault(self, fault: Fault, endpoint: str, model: str) -> bool:
        if fault.kind == "429":  # a per-minute quota: no Retry-After header, as the real API
            self._send(429, _quota_body(endpoint, model, False, fault.retry_after, 15))
        elif fault.kind in ("500", "503"):
            status = "INTERNAL" if fault.kind == "500" else "UNAVAILABLE"
            self._send(int(fault.kind), _error_body(int(fault.kind), status, "try again later"))
        elif fault.kind == "timeout":
            time.sleep(self.fake.timeout_sleep)
            self._send(504, _error_body(504, "DEADLINE_EXCEEDED", "late"))
        else:
            return False
        return True

    # --- generateContent ---

    def _generate(self, rec: Recorded, fault: Fault | None) -> None:
        code, body = self._generated(rec, fault)
        rec.answered = code == 200
        self._send(code, body if isinstance(body, bytes) else json.dumps(body).encode())

    def _generated(self, rec: Recorded, fault: Fault | None) -> tuple[int, Any]:
        """The status and body generateContent answers `rec` with."""
        config = rec.body.get("generationConfig", {})
        schema = config.get("responseJsonSchema")
        thinking = config.get("thinkingConfig", {})  # proto JSON: either spelling
        rec.thinking_level = str(thinking.get("thinkingLevel", thinking.get("thinking_level", "")))
        image = None
        for content in rec.body.get("contents", []):
            for part in content.get("parts", []):
                if (media := _inline(part)) is not None:
                    image = _decoded(media["data"])
                    rec.media_resolution = str(part.get("mediaResolution", {}).get("level", ""))
        if image is None:
            return 400, _error_body(400, "INVALID_ARGUMENT", "no image in request")
        if _enum_values(schema) >= self.fake.max_schema_enums:
            return 400, _error_body(400, "INVALID_ARGUMENT", TOO_MANY_STATES)
        rec.color, rec.image_size = _seen(image)
        rec.digest = hashlib.sha256(image).hexdigest()
        answer = self.fake.describe(rec.color, schema, rec.digest)
        kind = fault.kind if fault else (answer if isinstance(answer, str) else None)
        body: dict[str, Any]
        if kind == "blocked":
            body = {"promptFeedback": {"blockReason": "SAFETY"}, "modelVersion": rec.model}
        elif kind == "safety":
            body = {"candidates": [{"finishReason": "SAFETY", "index": 0}]}
        elif kind == "empty":
            body = {"candidates": [], "modelVersion": rec.model}
        elif kind == "malformed":
            body = self._candidate(rec.model, '{"keywords": {"garment": ["dress"]}, "capt')
        elif kind == "truncated":
            full = json.dumps(self._candidate(rec.model, json.dumps(answer))).encode()
            return 200, full[: len(full) // 2]
        elif kind == "off_vocab":
            off = {
                "keywords": {"garment": ["spaceship"], "color": ["purple"]},
                "caption": "A purple thing.",
            }
            body = self._candidate(rec.model, json.dumps(off))
        else:
            body = self._candidate(rec.model, json.dumps(answer))
        if "usageMetadata" in body:
            prompt = PROMPT_TOKENS + IMAGE_TOKENS.get(rec.media_resolution, 1120)
            thoughts = THINKING_TOKENS.get(rec.thinking_level, 1500)
            body["usageMetadata"] = {
                "promptTokenCount": prompt,
                "candidatesTokenCount": 40,
                "thoughtsTokenCount": thoughts,
                "totalTokenCount": prompt + 40 + thoughts,
            }
        return 200, body

    def _count_tokens(self, rec: Recorded, fault: Fault | None) -> None:
        """countTokens (free): what generateContent would bill as prompt for these contents,
        by the same rule (the text as PROMPT_TOKENS, each image by its media resolution)."""
        text = images = 0
        for content in rec.body.get("contents", []):
            for part in content.get("parts", []):
                if _inline(part) is not None:
                    level = str(part.get("mediaResolution", {}).get("level", ""))
                    images += IMAGE_TOKENS.get(level, 1120)
                elif part.get("text"):
                    text = PROMPT_TOKENS
        self._send(200, json.dumps({"totalTokens": text + images}).encode())

    # --- Batch API ---

    def _batch_post(self, path: str, raw: bytes) -> None:
        fake = self.fake
        if m := re.fullmatch(
            r"/v1beta/models/([^/:]+):(batchGenerateContent|asyncBatchEmbedContent)", path
        ):
            batch = json.loads(raw)["batch"]
            source = batch.get("inputConfig", {})
            if "fileName" in source:
                lines = fake.files[source["fileName"]].decode().splitlines()
                requests = [json.loads(line) for line in lines if line.strip()]
            else:
                requests = [
                    {"key": (r.get("metadata") or {}).get("key", ""), "request": r["request"]}
                    for r in source.get("requests", {}).get("requests", [])
                ]
            # As the real API: a create that times out or fails with a 5xx may have made
            # the job all the same (here: after the client gave up); a 429 made nothing.
            embeds = m.group(2) == "asyncBatchEmbedContent"
            fault = fake._next_fault(m.group(2))
            if fault is not None and fault.kind == "429":
                self._transport_fault(fault, m.group(2), m.group(1))
                return
            if fault is not None and fault.kind == "timeout":
                time.sleep(fake.timeout_sleep)
            with fake._lock:
                fake.batches_made += 1  # names never reused, as the real API's
                name = f"batches/{fake.batches_made:06d}"
                job = FakeBatch(
                    name,
                    batch.get("displayName", ""),
                    f"models/{m.group(1)}",
                    time.monotonic(),
                    requests,
                    source.get("fileName"),
                    outcomes.popleft() if (outcomes := fake._outcomes(embeds)) else "succeeded",
                    embeds=embeds,
                )
                fake.batches[name] = job
            if fault is not None and fault.kind == "timeout":
                self._send(504, _error_body(504, "DEADLINE_EXCEEDED", "late"))  # nobody reads it
                return
            if fault is not None and self._transport_fault(fault, m.group(2), ""):
                return
            self._send(200, json.dumps(self._job_json(job)).encode())
        elif m := re.fullmatch(r"/v1beta/batches/([\w-]+):cancel", path):
            cancelled = fake.batches.get(f"batches/{m.group(1)}")
            if cancelled is None:
                self._send(404, _error_body(404, "NOT_FOUND", "no such batch"))
                return
            cancelled.cancelled = True
            self._send(200, b"{}")
        elif path.startswith("/upload/v1beta/files"):  # resumable upload: start
            with fake._lock:
                session = f"files/{len(fake.files) + 1:06d}"
                fake.files[session] = b""
            url = f"{fake.base_url}/upload-session/{session}"
            self._send(200, b"{}", {"X-Goog-Upload-URL": url, "X-Goog-Upload-Status": "active"})
        elif path.startswith("/upload-session/"):
            name = path.removeprefix("/upload-session/")
            fake.files[name] += raw
            final = "finalize" in self.headers.get("X-Goog-Upload-Command", "")
            body = {"file": {"name": name, "sizeBytes": str(len(fake.files[name]))}}
            self._send(
                200,
                json.dumps(body).encode(),
                {"X-Goog-Upload-Status": "final" if final else "active"},
            )
        else:
            self._send(404, _error_body(404, "NOT_FOUND", f"no route {path}"))

    def _job_json(self, job: FakeBatch) -> dict[str, Any]:
        state = job.state(time.monotonic(), self.fake.batch_seconds)
        if self.fake.batches_held and not job.cancelled:
            state = "BATCH_STATE_RUNNING"
        kind = "EmbedContentBatch" if job.embeds else "GenerateContentBatch"
        meta: dict[str, Any] = {
            "@type": f"type.googleapis.com/google.ai.generativelanguage.v1beta.{kind}",
            "model": job.model,
            "displayName": job.display_name,
            "createTime": "2026-11-27T00:00:00Z",
            "state": state,
            "batchStats": {"requestCount": str(len(job.requests))},
        }
        if state == "BATCH_STATE_SUCCEEDED":
            meta["output"] = self._output(job)
        return {"name": job.name, "metadata": meta, "done": state != "BATCH_STATE_PENDING"}

    def _output(self, job: FakeBatch) -> dict[str, Any]:
        """Each request answered as generateContent (or embedContent) would, computed once."""
        if job.output is None and job.embeds:
            embedded = [
                {"response": {"embedding": self._vector(job.model, item["request"], None)}}
                | ({"metadata": {"key": item["key"]}} if item.get("key") else {})
                for item in job.requests
            ]
            job.output = {"inlinedEmbedContentResponses": {"inlinedResponses": embedded}}
        if job.output is None:
            answers = []
            for item in job.requests:
                key = item.get("key", "")
                code, body = (
                    (500, _error_body(500, "INTERNAL", "request failed in batch"))
                    if key in self.fake.batch_errors
                    else self._generated(Recorded("batch", job.model, item["request"]), None)
                )
                if code == 200 and isinstance(body, dict):
                    answers.append({"response": body, "key": key})
                else:
                    error = json.loads(body)["error"] if isinstance(body, bytes) else body["error"]
                    answers.append({"error": error, "key": key})
            if job.input_file is not None:
                out = f"files/out-{job.name.split('/')[-1]}"
                self.fake.files[out] = "\n".join(json.dumps(a) for a in answers).encode()
                job.output = {"responsesFile": out}
            else:
                inlined = [
                    {k: v for k, v in a.items() if k != "key"} | {"metadata": {"key": a["key"]}}
                    for a in answers
                ]
                job.output = {"inlinedResponses": {"inlinedResponses": inlined}}
        return job.output

    def _batch_get(self, batch_id: str) -> None:
        job = self.fake.batches.get(f"batches/{batch_id}")
        done = job is not None and time.monotonic() - job.created >= self.fake.batch_seconds
        if job is not None and done and job.outcome == "forgotten" and not self.fake.batches_held:
            self.fake.forget_batch(job.name)  # done, then gone before it was read
            job = None
        if job is None:
            self._send(404, _error_body(404, "NOT_FOUND", "no such batch"))
            return
        self._send(200, json.dumps(self._job_json(job)).encode())

    def _batch_list(self) -> None:
        query = dict(p.split("=", 1) for p in self.path.partition("?")[2].split("&") if "=" in p)
        size = int(query.get("pageSize", 50))
        start = int(query.get("pageToken", 0) or 0)
        jobs = list(self.fake.batches.values())[start : start + size]
        body: dict[str, Any] = {"operations": [self._job_json(j) for j in jobs]}
        if start + size < len(self.fake.batches):
            body["nextPageToken"] = str(start + size)
        self._send(200, json.dumps(body).encode())

    @staticmethod
    def _candidate(model: str, text: str) -> dict[str, Any]:
        return {
            "candidates": [
                {
                    "content": {"parts": [{"text": text}], "role": "model"},
                    "finishReason": "STOP",
                    "index": 0,
                }
            ],
            "usageMetadata": {
                "promptTokenCount": 350,
                "candidatesTokenCount": 40,
                "totalTokenCount": 390,
            },
            "modelVersion": model,
            "responseId": hashlib.sha1(text.encode()).hexdigest()[:16],
        }

    # --- embeddings ---

    def _vector(self, model: str, request: dict[str, Any], fault: Fault | None) -> dict[str, Any]:
        """One vector for one content: all its parts, text and images, merged into it. Words
        beside a picture change it: a colour they name replaces the picture's own."""
        dim = int(request.get("outputDimensionality") or 3072)
        if fault is not None and fault.kind == "wrong_dim":
            dim -= 1
        said = [task_of(p["text"])[1] for p in request["content"]["parts"] if "text" in p]
        recoloured = any(SYNONYMS.get(t, t) in PALETTE for text in said for t in tokens(text))
        words = []
        for part in request["content"]["parts"]:
            if (media := _inline(part)) is not None:
                garments, colors = self._looks_like(_decoded(media["data"]))
                words += garments + ([] if recoloured else colors)
        return {"values": fake_embedding(" ".join(words + said), dim)}

    def _looks_like(self, image: bytes) -> tuple[list[str], list[str]]:
        """What the multimodal embedding model makes of a picture: the garment and colour it
        sees (its script for known images), as words in the text space."""
        color, _ = _seen(image)
        answer = self.fake.describe(color, None, hashlib.sha256(image).hexdigest())
        if not isinstance(answer, dict):
            return [], [color]
        keywords = answer.get("keywords", {})
        return list(keywords.get("garment", [])), list(keywords.get("color", [color]))

    def _refusal(self, model: str, requests: list[dict[str, Any]]) -> str | None:
        """Why the real service would refuse these embedding requests, or None."""
        multimodal = model.startswith(MULTIMODAL_EMBEDDING_MODELS)
        for request in requests:
            parts = request.get("content", {}).get("parts", [])
            images = sum(_inline(p) is not None for p in parts)
            if images and not multimodal:
                return f"{model} does not support image input"
            if images > MAX_IMAGES_PER_EMBED_REQUEST:
                return f"at most {MAX_IMAGES_PER_EMBED_REQUEST} images per request"
            if multimodal and request.get("taskType"):
                return f"{model} does not support taskType; write the task into the text"
        return None

    def _embed_one(self, rec: Recorded, fault: Fault | None) -> None:
        refusal = self._refusal(rec.model, [rec.body])
        if refusal:
            self._send(400, _error_body(400, "INVALID_ARGUMENT", refusal))
            return
        body = {"embedding": self._vector(rec.model, rec.body, fault)}
        self._send_embedding(body, fault)

    def _embed_batch(self, rec: Recorded, fault: Fault | None) -> None:
        requests = rec.body.get("requests", [])
        if not requests or len(requests) > 100:
            self._send(400, _error_body(400, "INVALID_ARGUMENT", "1 to 100 requests allowed"))
            return
        refusal = self._refusal(rec.model, requests)
        if refusal:
            self._send(400, _error_body(400, "INVALID_ARGUMENT", refusal))
            return
        body = {"embeddings": [self._vector(rec.model, r, fault) for r in requests]}
        self._send_embedding(body, fault)

    def _send_embedding(self, body: dict[str, Any], fault: Fault | None) -> None:
        data = json.dumps(body).encode()
        if fault is not None and fault.kind == "truncated":
            data = data[: len(data) // 2]
        self._send(200, data)


if __name__ == "__main__":  # a standalone fake for manual runs and benchmarks
    import argparse

    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, default=8765)
    args = parser.parse_args()
    fake = FakeGemini()
    fake.start(args.port)
    print(f"fake Gemini at {fake.base_url} (key {API_KEY!r})", flush=True)
    threading.Event().wait()
