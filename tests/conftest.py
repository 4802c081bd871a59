"""Shared fixtures: a fake Gemini server, a hermetic environment, images, a Chroma server."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
from PIL import Image, ImageDraw

from indexer.records import ImageRecord
from tests.fake_gemini import API_KEY, PALETTE, FakeGemini

DATASET = Path(__file__).resolve().parents[1].parent / "shared" / "datasets" / "clothing-small"


def _setting_names() -> list[str]:
    """Every variable Settings reads: none of a developer's may leak into a test."""
    from pydantic import AliasChoices

    from indexer.config import Settings

    names = {"CHROMA_SERVER_AUTHN_CREDENTIALS"}
    for info in Settings.model_fields.values():
        if isinstance(info.validation_alias, AliasChoices):
            names.update(str(a) for a in info.validation_alias.choices)
    return sorted(names)


_LEAKY = _setting_names()


def _scrub(environ: dict[str, str] | os._Environ[str]) -> None:
    for name in _LEAKY:
        environ.pop(name, None)


# Module- and session-scoped fixtures are built before any function-scoped one runs: the
# developer's settings are out of reach before anything is collected, and the project
# folder's `.env` once collection (which reads the project folder) is done. Each test then
# gets a working folder of its own (`hermetic`).
_scrub(os.environ)


def pytest_collection_finish(session: pytest.Session) -> None:
    os.chdir(tempfile.mkdtemp(prefix="indexer-tests-"))


@pytest.fixture(autouse=True)
def hermetic(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """No setting of the person running the tests, and no `.env` of theirs, is read: every
    test runs with the variables Settings reads removed, in a fresh working folder."""
    for name in _LEAKY:
        monkeypatch.delenv(name, raising=False)
    # The default data folder lives there: a test that sets no INDEXER_HOME writes here.
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg-data"))
    work = tmp_path / "cwd"
    work.mkdir(exist_ok=True)
    monkeypatch.chdir(work)
    return work


@pytest.fixture(scope="session")
def models_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One ONNX export of the local models for the whole test run, shared by the parallel
    workers (an export takes a file lock, so the first worker makes it, once)."""
    root = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        root = root.parent  # the run's folder, above each worker's own
    path = root / "models"
    path.mkdir(exist_ok=True)
    return path


@pytest.fixture
def fake() -> Iterator[FakeGemini]:
    # A timeout fault answers after the client gave up; a normal answer, even on a loaded
    # machine, comes long before the client would.
    with FakeGemini(timeout_sleep=4.0) as server:
        yield server


@pytest.fixture
def env(
    fake: FakeGemini,
    hermetic: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    models_dir: Path,
) -> dict[str, str]:
    """Point everything at the fake server and a fresh data folder; return the variables."""
    values = {
        "GOOGLE_API_KEY": API_KEY,
        "GEMINI_BASE_URL": fake.base_url,
        "INDEXER_HOME": str(tmp_path / "home"),
        "INDEXER_MODELS_DIR": str(models_dir),
        "INDEXER_REQUEST_TIMEOUT": "3",
        "INDEXER_RETRY_INITIAL_WAIT": "0.05",
        "INDEXER_RETRY_MAX_WAIT": "2",
        "INDEXER_MAX_ATTEMPTS": "4",
        "INDEXER_GENERATION_RPM": "6000",
        "INDEXER_EMBEDDING_RPM": "6000",
        "INDEXER_BATCH_SIZE": "4",
        "INDEXER_CONCURRENCY": "4",
        "ANONYMIZED_TELEMETRY": "False",
    }
    for name, value in values.items():
        monkeypatch.setenv(name, value)
    return values


@dataclass
class Ran:
    returncode: int
    stdout: str
    stderr: str


def in_process(tool: str, *args: str, **env: str) -> Ran:
    """The command run in this process, as its entry point would run it, with `env` set for
    its duration: messages are what is checked here, and a process of its own would only
    add its start-up. Where the process is the point (a kill, a second writer, a server),
    tests start one."""
    from typer.testing import CliRunner

    from indexer import console
    from indexer.cli import app as indexer_app
    from query.cli import app as query_app

    app = indexer_app if tool == "indexer" else query_app
    env = {"COLUMNS": "200", **env}
    # A process's consoles take the terminal's width from COLUMNS once, when they are made;
    # these were made when this process imported them.
    widths = console.out.width, console.err.width
    console.out.width = console.err.width = int(env["COLUMNS"])
    try:
        done = CliRunner().invoke(app, list(args), env=env)
    finally:
        console.out.width, console.err.width = widths
    if done.exception is not None and not isinstance(done.exception, SystemExit):
        raise done.exception
    return Ran(done.exit_code, done.stdout, done.stderr)


def catalog_counts() -> tuple[int, int, int]:
    """(indexed, pending, failed) as `indexer status --json` reports them."""
    import json

    status = in_process("indexer", "status", "--json")
    assert status.returncode == 0, status.stderr
    found = json.loads(status.stdout)
    return found["indexed"], found["pending"], found["failed"]


def in_another_process(*args: str) -> subprocess.CompletedProcess[str]:
    """`python -m indexer ARGS` as a process of its own (a second writer, say), with this
    test's environment."""
    return subprocess.run(
        [sys.executable, "-m", "indexer", *args],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])},
        timeout=300,
    )


def image_record(
    rid: str, vec: list[float], picture: list[float] | None = None, **keywords: list[str]
) -> ImageRecord:
    """A complete record for store tests: path and caption from `rid`, model "model-a"."""
    return ImageRecord(
        id=rid,
        path=f"/photos/{rid}.jpg",
        caption=f"caption {rid}",
        keywords=keywords,
        raw_keywords=keywords,
        embedding=vec,
        image_embedding=picture,
        model_ids={"embedding_model": "model-a"},
        vocabulary="v1",
    )


def garment_image(path: Path, color: str, size: tuple[int, int] = (320, 400)) -> Path:
    """A synthetic photo: a garment-shaped patch of `color` filling most of the frame."""
    rgb = PALETTE[color]
    img = Image.new("RGB", size, rgb)
    draw = ImageDraw.Draw(img)
    w, h = size
    # A little texture so encoders see an image, not a flat fill.
    for y in range(0, h, 16):
        shade = tuple(max(0, c - 12) for c in rgb)
        draw.line([(0, y), (w, y)], fill=shade, width=2)
    path.parent.mkdir(parents=True, exist_ok=True)
    img.save(path)
    return path


@pytest.fixture
def dataset() -> Path:
    if not (DATASET / "validation").is_dir():
        pytest.skip("shared clothing-small dataset is absent")
    return DATASET


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def query_serve(log: Path, *options: str) -> Iterator[str]:
    """`query serve OPTIONS` as a process on a free loopback port, its output in `log`;
    yields its base URL once it answers (GET /api/health needs no token), and stops it
    with SIGINT, as Ctrl-C would."""
    port = _free_port()
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "query", "serve", "--port", str(port), *options],
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                urllib.request.urlopen(f"{base}/api/health", timeout=5)
                break
            except urllib.error.HTTPError:
                break  # answering: a store that does not answer is the test's business
            except OSError:
                assert proc.poll() is None, log.read_text()[-2000:]
                assert time.monotonic() < deadline, "query serve did not start"
                time.sleep(0.1)
        yield base
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


class ChromaServer:
    """A real `chroma run` process on 127.0.0.1 that a test can stop and start again."""

    def __init__(self, data: Path, log: Path) -> None:
        exe = shutil.which("chroma") or str(Path(sys.executable).parent / "chroma")
        if not Path(exe).exists():
            pytest.skip("the chroma server command is not installed")
        self.exe, self.data, self.log = exe, data, log
        self.host, self.port = "127.0.0.1", _free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen(
                [
                    self.exe,
                    "run",
                    "--path",
                    str(self.data),
                    "--host",
                    self.host,
                    "--port",
                    str(self.port),
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                env={**os.environ, "ANONYMIZED_TELEMETRY": "False"},
            )
        deadline = time.monotonic() + 60
        while True:
            try:
                urllib.request.urlopen(
                    f"http://{self.host}:{self.port}/api/v2/heartbeat", timeout=1
                )
                return
            except OSError:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(
                        "chroma server did not start: " + self.log.read_text()[-2000:]
                    ) from None
                time.sleep(0.2)

    def stop(self) -> None:
        if self.proc is None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.proc = None


@pytest.fixture
def chroma_server(tmp_path: Path) -> Iterator[ChromaServer]:
    """A real `chroma run` server on 127.0.0.1, stopped after the test."""
    server = ChromaServer(tmp_path / "server-data", tmp_path / "chroma-server.log")
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def server_env(
    env: dict[str, str], chroma_server: ChromaServer, monkeypatch: pytest.MonkeyPatch
) -> ChromaServer:
    """The hermetic environment, pointed at a real Chroma server; image vectors off, since
    tests that use it start several indexer processes and each would load the image model."""
    monkeypatch.setenv("CHROMA_HOST", chroma_server.host)
    monkeypatch.setenv("CHROMA_PORT", str(chroma_server.port))
    monkeypatch.setenv("INDEXER_IMAGE_VECTORS", "false")
    return chroma_server
