"""What a hostile file system, web page or catalog can do, each attack reproduced
through the CLI (in-process; a process where a second one is the point) or real HTTP
(a `query serve` process, or the ASGI app) against the fake Gemini and embedded Chroma."""

from __future__ import annotations

import csv
import io
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from indexer.providers.gemini import GeminiProvider
from query.client import QueryClient
from query.server import IMAGE_SEARCH_QUEUE, create_app
from tests.conftest import Ran, garment_image, in_process, query_serve
from tests.fake_gemini import FakeGemini

ANSWERS = {
    "red": {
        "keywords": {"garment": ["dress"], "season": ["summer"], "color": ["red"]},
        "caption": "A red summer dress.",
    },
    "blue": {
        "keywords": {"garment": ["jeans"], "season": ["fall"], "color": ["blue"]},
        "caption": "Blue denim jeans.",
    },
    "green": {
        "keywords": {"garment": ["shorts"], "season": ["summer"], "color": ["green"]},
        "caption": '=HYPERLINK("http://evil.example","shorts") \x01green\x1b[0m shorts.',
    },
}
SECRET = b"root:$6$not-for-the-web$:19000:0:99999:7:::\n"


def cli(tool: str, *args: str, **env: str) -> Ran:
    """`indexer|query ARGS` in this process; wide, so tables do not fold."""
    return in_process(tool, *args, COLUMNS="400", **env)


def error_line(stderr: str) -> str:
    """The one `error:` line a failed command prints (notes may stand before it)."""
    errors = [line for line in stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "Traceback" not in stderr, stderr
    return errors[0]


@pytest.fixture
def hostile(env: dict[str, str], fake: FakeGemini, monkeypatch: pytest.MonkeyPatch) -> FakeGemini:
    # Several processes start here; the optional image model would load in each.
    monkeypatch.setenv("INDEXER_IMAGE_VECTORS", "false")
    fake.by_color.update(ANSWERS)
    return fake


@pytest.fixture
def indexed(hostile: FakeGemini, tmp_path: Path) -> Path:
    folder = tmp_path / "photos"
    for color in ("red", "blue"):
        garment_image(folder / f"{color}.jpg", color)
    result = cli("indexer", "run", str(folder))
    assert result.returncode == 0, result.stderr
    return folder


def _api(token: str | None = None, home: Path | None = None) -> TestClient:
    client = QueryClient.from_env()
    thumbs = (home or Path(os.environ["INDEXER_HOME"])) / "thumbs"
    return TestClient(create_app(client, thumbs, token), base_url="http://127.0.0.1")


def _id_of(name: str) -> str:
    hits = QueryClient.from_env().text("clothes", limit=10)
    return next(h.id for h in hits if Path(h.path).name == name)


# --- 1. a photo swapped for a symlink after indexing ---


def test_a_photo_swapped_for_a_symlink_is_never_served(indexed: Path, tmp_path: Path) -> None:
    secret = tmp_path / "shadow"
    secret.write_bytes(SECRET)
    api = _api()
    blue, red = _id_of("blue.jpg"), _id_of("red.jpg")
    assert api.get(f"/api/images/{blue}/thumbnail").status_code == 200  # cached before the swap
    (indexed / "blue.jpg").unlink()
    os.symlink(secret, indexed / "blue.jpg")
    for what in ("file", "thumbnail"):
        response = api.get(f"/api/images/{blue}/{what}")
        assert response.status_code == 410, (what, response.status_code)
        assert SECRET not in response.content
    # Another real photo put in its place is not the indexed image either.
    (indexed / "blue.jpg").unlink()
    garment_image(indexed / "blue.jpg", "green")
    assert api.get(f"/api/images/{blue}/file").status_code == 410
    # Untouched photos are still served, byte for byte.
    original = api.get(f"/api/images/{red}/file")
    assert original.status_code == 200 and original.content == (indexed / "red.jpg").read_bytes()


def test_a_link_planted_in_the_thumbnail_cache_is_never_served(
    indexed: Path, tmp_path: Path
) -> None:
    secret = tmp_path / "shadow"
    secret.write_bytes(SECRET)
    api = _api()
    red = _id_of("red.jpg")
    assert api.get(f"/api/images/{red}/thumbnail").status_code == 200  # made and verified
    cached = Path(os.environ["INDEXER_HOME"]) / "thumbs" / f"{red}.jpg"
    cached.unlink()
    os.symlink(secret, cached)
    response = api.get(f"/api/images/{red}/thumbnail")
    assert response.status_code == 200 and SECRET not in response.content
    assert response.content.startswith(b"\xff\xd8")  # a JPEG made again from the photo
    assert not cached.is_symlink() and secret.read_bytes() == SECRET


def test_a_photo_replaced_by_a_folder_is_gone_not_a_crash_nor_a_leak(indexed: Path) -> None:
    api = _api()
    red = _id_of("red.jpg")
    (indexed / "red.jpg").unlink()
    (indexed / "red.jpg").mkdir()
    for what in ("file", "thumbnail"):  # warm: the server's own pools open what they need
        assert api.get(f"/api/images/{red}/{what}").status_code == 410
    before = len(os.listdir("/proc/self/fd"))
    for _ in range(20):
        for what in ("file", "thumbnail"):
            assert api.get(f"/api/images/{red}/{what}").status_code == 410
    assert len(os.listdir("/proc/self/fd")) <= before + 2  # no descriptor per request
    result = cli("query", "image", str(indexed / "red.jpg"))
    assert result.returncode == 2
    assert "not a regular file (a folder)" in error_line(result.stderr)


def test_export_never_writes_a_sidecar_through_a_symlink(indexed: Path, tmp_path: Path) -> None:
    victim = tmp_path / "victim.txt"
    victim.write_text("keep me")
    os.symlink(victim, indexed / "red.jpg.xmp")
    result = cli("indexer", "export", "--xmp")
    assert result.returncode == 0, result.stderr
    assert victim.read_text() == "keep me"
    assert "red.jpg.xmp: the sidecar path is a symbolic link" in result.stderr
    assert (indexed / "blue.jpg.xmp").is_file()


# --- 2. special files ---


def test_devices_fifos_and_oversized_files_are_refused_not_read(
    hostile: FakeGemini, tmp_path: Path
) -> None:
    folder = tmp_path / "photos"
    garment_image(folder / "good.jpg", "red")
    os.symlink("/dev/zero", folder / "zero.jpg")
    os.mkfifo(folder / "pipe.jpg")
    noise = Image.frombytes("RGB", (200, 200), os.urandom(200 * 200 * 3))
    noise.save(folder / "big.png")
    limit = str((folder / "good.jpg").stat().st_size + 1000)
    assert (folder / "big.png").stat().st_size > int(limit)

    result = cli("indexer", "run", str(folder), INDEXER_MAX_FILE_BYTES=limit)
    assert result.returncode == 1, result.stderr
    assert "indexed 1," in result.stdout
    assert "zero.jpg: not a regular file (a character device)" in result.stderr
    assert "pipe.jpg: not a regular file (a FIFO)" in result.stderr
    assert "big.png: file too large" in result.stderr
    status = json.loads(cli("indexer", "status", "--json", INDEXER_MAX_FILE_BYTES=limit).stdout)
    assert {Path(f["path"]).name for f in status["failures"]} == {"zero.jpg", "pipe.jpg", "big.png"}

    for special, kind in (("pipe.jpg", "a FIFO"), ("zero.jpg", "a character device")):
        query = cli("query", "image", str(folder / special))
        assert query.returncode == 2
        assert f"not a regular file ({kind})" in error_line(query.stderr)


# --- 3. the gallery under uploads and cross-site requests ---


@pytest.fixture
def server(indexed: Path, tmp_path: Path) -> Iterator[str]:
    """`query serve` as a process on a free loopback port; yields its base URL."""
    with query_serve(tmp_path / "serve.log") as base:
        yield base


def _jpeg(color: str = "blue") -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (64, 64), {"blue": (30, 60, 200), "red": (200, 30, 30)}[color]).save(
        buf, "JPEG"
    )
    return buf.getvalue()


def test_foreign_hosts_and_cross_site_requests_are_refused(indexed: Path) -> None:
    api = _api()
    assert api.get("/api/facets", headers={"Host": "evil.example"}).status_code == 400
    assert api.get("/api/facets", headers={"Host": "attacker.test:8080"}).status_code == 400
    for own in ("127.0.0.1:8080", "localhost:8080", "[::1]:8080"):
        assert api.get("/api/facets", headers={"Host": own}).status_code == 200, own
    upload = {"file": ("q.jpg", _jpeg(), "image/jpeg")}
    evil = api.post("/api/search/image", files=upload, headers={"Origin": "http://evil.example"})
    assert evil.status_code == 403
    null = api.post("/api/search/image", files=upload, headers={"Origin": "null"})
    assert null.status_code == 403
    referred = api.get(
        "/api/search", params={"q": "dress"}, headers={"Referer": "http://evil.example/x"}
    )
    assert referred.status_code == 403
    same = api.post("/api/search/image", files=upload, headers={"Origin": "http://127.0.0.1"})
    assert same.status_code == 200, same.text


def test_uploads_stop_at_the_limit_while_being_read(server: str) -> None:
    host, port = server.removeprefix("http://").split(":")
    # Declared too large: refused before a byte of the body is read.
    with socket.create_connection((host, int(port)), timeout=30) as sock:
        sock.sendall(
            f"POST /api/search/image HTTP/1.1\r\nHost: {host}:{port}\r\n"
            "Content-Type: multipart/form-data; boundary=x\r\n"
            f"Content-Length: {300 * 2**20}\r\n\r\n".encode()
        )
        assert sock.recv(4096).startswith(b"HTTP/1.1 413")
    # Size not declared (chunked): the server answers 413 once the limit is passed.
    sent = 0
    chunk = b"0" * 2**20
    with socket.create_connection((host, int(port)), timeout=30) as sock:
        sock.sendall(
            f"POST /api/search/image HTTP/1.1\r\nHost: {host}:{port}\r\n"
            "Content-Type: multipart/form-data; boundary=x\r\n"
            "Transfer-Encoding: chunked\r\n\r\n".encode()
        )
        preamble = b'--x\r\nContent-Disposition: form-data; name="file"; filename="a.png"\r\n\r\n'
        sock.sendall(b"%x\r\n%s\r\n" % (len(preamble), preamble))
        try:
            while sent < 300 * 2**20:
                sock.sendall(b"%x\r\n%s\r\n" % (len(chunk), chunk))
                sent += len(chunk)
        except OSError:
            pass  # the server closed the connection: what we want
        sock.settimeout(30)
        answer = sock.recv(4096)
    assert answer.startswith(b"HTTP/1.1 413"), answer[:200]
    assert sent < 80 * 2**20  # stopped near 20 MiB (plus socket buffers), not 300 MiB


def test_a_huge_pixel_count_is_refused_before_decoding(indexed: Path) -> None:
    buf = io.BytesIO()
    Image.new("RGB", (9000, 5000), (30, 60, 200)).save(buf, "PNG")  # 45 Mpx, small file
    response = _api().post(
        "/api/search/image", files={"file": ("huge.png", buf.getvalue(), "image/png")}
    )
    assert response.status_code == 413 and "9000x5000" in response.json()["detail"]


def test_while_the_model_holds_image_searches_every_other_route_answers_and_bursts_get_503(
    server: str, hostile: FakeGemini
) -> None:
    """A model slow to look at pictures holds up the image searches queued behind it, and
    nothing else: no lock stands between the routes."""
    shown = httpx.get(f"{server}/api/images", timeout=60).json()["images"][0]
    gate = threading.Event()
    hostile.gates["generateContent"] = gate  # describing the query image waits
    before = hostile.count("generateContent")
    slots = GeminiProvider.concurrency
    burst = slots + IMAGE_SEARCH_QUEUE + 3
    answers: list[httpx.Response] = []

    def upload() -> None:
        answers.append(
            httpx.post(
                f"{server}/api/search/image",
                files={"file": ("q.jpg", _jpeg(), "image/jpeg")},
                timeout=120,
            )
        )

    threads = [threading.Thread(target=upload) for _ in range(burst)]
    try:
        for t in threads:
            t.start()
        deadline = time.monotonic() + 60
        while hostile.count("generateContent") < before + slots or len(answers) < 3:
            assert time.monotonic() < deadline, "uploads never reached the model"
            time.sleep(0.05)
        # Every model slot is held; each other route answers all the same. The timeout
        # only keeps a route stuck behind the held searches from hanging the test.
        routes = [
            "/",
            "/openapi.json",
            "/api/facets",
            "/api/health",
            "/api/images",
            "/api/images?where=color=red",
            "/api/search?q=dress",
            "/api/search?q=dress&where=color=blue",
            shown["image"].removesuffix("/file"),
            shown["image"],
            shown["thumbnail"],
        ]
        for route in routes:
            answer = httpx.get(f"{server}{route}", timeout=60)
            assert answer.status_code == 200, (route, answer.text)
        assert not gate.is_set() and len(answers) == 3  # still held: they waited for nobody
        refused = [a for a in answers if a.status_code == 503]
        assert len(refused) == 3 and all(a.headers["retry-after"] for a in refused)
    finally:
        gate.set()
        for t in threads:
            t.join(timeout=120)
    assert sorted(a.status_code for a in answers) == [200] * (burst - 3) + [503] * 3


# --- 4. console markup and control characters in data ---


def test_markup_and_escape_codes_in_names_are_shown_as_data(
    hostile: FakeGemini, tmp_path: Path
) -> None:
    folder = tmp_path / "in[/b]folder"
    garment_image(folder / "r[/x].jpg", "red")
    garment_image(folder / "e\x1b[31mvil.jpg", "blue")
    # "/" makes these nested folders: the path as a whole holds the closing tags.
    (folder / "bad[").mkdir()
    (folder / "bad[/y] [bold]x.jpg").write_text("not an image")
    run = cli("indexer", "run", str(folder))
    assert run.returncode == 1 and "Traceback" not in run.stderr, run.stderr
    assert "bad[/y] [bold]x.jpg: not a recognised image format" in run.stderr
    status = cli("indexer", "status")
    assert status.returncode == 0, status.stderr
    assert "in[/b]folder/bad[/y] [bold]x.jpg" in status.stdout
    found = cli("query", "text", "dress or jeans")
    assert found.returncode == 0, found.stderr
    assert "in[/b]folder/r[/x].jpg" in found.stdout
    assert "\x1b[31m" not in found.stdout and "e\\x1b[31mvil.jpg" in found.stdout
    missing = cli("query", "image", str(folder / "gone[/x]\x1b[2J.jpg"))
    assert missing.returncode == 2
    assert "gone[/x]\\x1b[2J.jpg" in missing.stderr and "\x1b" not in missing.stderr


# --- 5. exports of real names and captions ---


def test_exports_survive_long_names_control_characters_and_formulas(
    hostile: FakeGemini, tmp_path: Path
) -> None:
    folder = tmp_path / "photos"
    longest = "a" * 247 + ".jpg"  # 251 bytes: its sidecar name is 255, the most allowed
    too_long = "b" * 248 + ".jpg"  # 252 bytes: its sidecar name would be 256
    garment_image(folder / longest, "red")
    garment_image(folder / too_long, "blue")
    garment_image(folder / "green.jpg", "green")
    assert cli("indexer", "run", str(folder)).returncode == 0
    xmp = cli("indexer", "export", "--xmp")
    assert xmp.returncode == 0, xmp.stderr
    assert "wrote 2 XMP sidecars" in xmp.stderr and "name too long" in xmp.stderr.lower()
    assert (folder / (longest + ".xmp")).is_file()
    sidecar = ET.parse(folder / "green.jpg.xmp")  # parses: no XML-forbidden characters
    text = "".join(sidecar.getroot().itertext())
    assert "green" in text and "\x01" not in text

    exported = cli("indexer", "export", "--format", "csv")
    assert exported.returncode == 0, exported.stderr
    rows = {Path(r["path"]).name: r for r in csv.DictReader(io.StringIO(exported.stdout))}
    assert rows["green.jpg"]["caption"].startswith("'=HYPERLINK(")


# --- 6. a .env that points the key elsewhere ---


def test_a_dotenv_cannot_send_the_key_to_a_plain_http_host(
    hostile: FakeGemini, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = tmp_path / "photos"
    garment_image(folder / "red.jpg", "red")
    monkeypatch.delenv("GEMINI_BASE_URL")
    dotenv = Path.cwd() / ".env"
    dotenv.write_text("GEMINI_BASE_URL=http://attacker.example:9/\n")
    refused = cli("indexer", "run", str(folder))
    assert refused.returncode == 2 and refused.stderr.count("\n") == 1, refused.stderr
    assert "http://attacker.example:9/" in error_line(refused.stderr) and "https" in refused.stderr
    assert hostile.requests == []

    dotenv.write_text(f"GEMINI_BASE_URL={hostile.base_url}\n")
    allowed = cli("indexer", "run", str(folder))
    assert allowed.returncode == 0, allowed.stderr
    assert allowed.stderr.count("not Google's API") == 1
    assert f"GEMINI_BASE_URL in {dotenv}" in allowed.stderr


# --- 7. smaller leaks and gaps ---


def test_token_guards_docs_and_takes_the_bearer_scheme_only(indexed: Path) -> None:
    api = _api(token="s3cret")
    for path in ("/docs", "/redoc", "/openapi.json"):
        assert api.get(path).status_code == 401, path
        assert api.get(path, headers={"Authorization": "Bearer s3cret"}).status_code == 200
    assert api.get("/api/facets", headers={"Authorization": "s3cret"}).status_code == 401
    assert api.get("/api/facets", headers={"Authorization": "Basic s3cret"}).status_code == 401
    for scheme in ("bearer", "BEARER", "Bearer"):
        ok = api.get("/api/facets", headers={"Authorization": f"{scheme} s3cret"})
        assert ok.status_code == 200, scheme
    # ?token= opens the page only; API calls carry the cookie or the header.
    assert api.get("/api/facets", params={"token": "s3cret"}).status_code == 401


def test_every_response_carries_security_headers(indexed: Path) -> None:
    api = _api()
    for path in ("/", "/api/facets", "/api/images/" + "0" * 32):
        headers = api.get(path).headers
        assert headers["x-content-type-options"] == "nosniff"
        assert headers["x-frame-options"] == "DENY"
        assert "frame-ancestors 'none'" in headers["content-security-policy"]
    page_policy = api.get("/").headers["content-security-policy"]
    assert "script-src 'sha256-" in page_policy and "unsafe-inline" not in page_policy


def test_access_logs_do_not_print_the_token(indexed: Path, tmp_path: Path) -> None:
    log = tmp_path / "serve.log"
    with query_serve(log, "-v", "--token", "s3cret") as base:
        assert httpx.get(f"{base}/", params={"token": "s3cret"}).status_code == 200
    logs = log.read_text()
    assert "GET /?token=[redacted]" in logs and "s3cret" not in logs


def test_bad_vocabulary_encoding_and_embedding_size_get_one_line(
    hostile: FakeGemini, tmp_path: Path
) -> None:
    vocabulary = tmp_path / "vocab.toml"
    vocabulary.write_bytes("garment = ['caf\xe9']\n".encode("latin-1"))
    result = cli("indexer", "run", str(tmp_path), INDEXER_VOCABULARY=str(vocabulary))
    assert result.returncode == 2 and "not UTF-8" in error_line(result.stderr)
    huge = cli("indexer", "run", str(tmp_path), GEMINI_EMBEDDING_DIM="100000000000000000000")
    assert huge.returncode == 2 and "3072" in error_line(huge.stderr)


# --- 8. two writers on one embedded store ---


def test_a_second_writer_is_told_the_store_is_busy(hostile: FakeGemini, tmp_path: Path) -> None:
    watched, other = tmp_path / "watched", tmp_path / "other"
    garment_image(watched / "red.jpg", "red")
    garment_image(other / "blue.jpg", "blue")
    watcher = subprocess.Popen(
        [sys.executable, "-m", "indexer", "watch", str(watched)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert watcher.stderr is not None
        for line in watcher.stderr:
            if line.startswith("watching"):
                break
        calls = hostile.count("generateContent")
        second = cli("indexer", "run", str(other))
        busy = error_line(second.stderr)
        assert second.returncode == 2 and "busy" in busy and "CHROMA_HOST" in busy
        assert hostile.count("generateContent") == calls  # no work done twice
    finally:
        watcher.send_signal(signal.SIGTERM)
        watcher.communicate(timeout=60)
    assert watcher.returncode == 0
    assert cli("indexer", "run", str(other)).returncode == 0  # free again once it stopped


@pytest.mark.parametrize("spelling", ["token", "%74oken", "t%6Fken", "%74%6f%6b%65%6e"])
def test_the_access_token_is_redacted_however_its_name_is_encoded(spelling: str) -> None:
    import logging

    from query.security import RedactToken

    record = logging.LogRecord(
        "uvicorn.access", logging.INFO, "", 0, '%s - "%s %s HTTP/%s" %d', None, None
    )
    record.args = ("127.0.0.1", "GET", f"/api/images?where=a&{spelling}=s3cret&x=1", "1.1", 200)
    RedactToken().filter(record)
    logged = record.getMessage()
    assert "s3cret" not in logged and f"{spelling}=[redacted]" in logged and "x=1" in logged


def test_json_and_csv_for_a_terminal_carry_no_character_a_terminal_would_act_on(
    hostile: FakeGemini, tmp_path: Path
) -> None:
    import pty

    evil = "A \u202eesrever\u202c dress \x9b31m in \x1b[2J red\x7f."
    hostile.by_color["red"] = {**ANSWERS["red"], "caption": evil}
    folder = tmp_path / "photos"
    garment_image(folder / "red.jpg", "red")
    (folder / "bad\x9b\u202e.jpg").write_text("not an image")
    assert cli("indexer", "run", str(folder)).returncode == 1
    raw = ("\x1b", "\x9b", "\u202e", "\x7f")
    found = cli("query", "text", "dress", "--json")
    assert found.returncode == 0, found.stderr
    assert not any(c in found.stdout for c in raw)
    assert json.loads(found.stdout)[0]["caption"] == evil  # the same data, escaped
    status = cli("indexer", "status", "--json")
    assert not any(c in status.stdout for c in raw)
    assert any("\u202e" in f["path"] for f in json.loads(status.stdout)["failures"])
    exported = cli("indexer", "export", "-f", "jsonl")
    assert not any(c in exported.stdout for c in raw)
    assert json.loads(exported.stdout.splitlines()[0])["caption"] == evil
    # CSV on a terminal shows the characters escaped; piped elsewhere it stays the data.
    leader, follower = pty.openpty()
    proc = subprocess.Popen(
        [sys.executable, "-m", "indexer", "export", "-f", "csv"],
        stdout=follower,
        stderr=subprocess.PIPE,
    )
    os.close(follower)
    shown = b""
    while True:
        try:
            chunk = os.read(leader, 65536)
        except OSError:  # the other end closed
            break
        if not chunk:
            break
        shown += chunk
    proc.wait(timeout=60)
    os.close(leader)
    text = shown.decode()
    assert proc.returncode == 0 and "esrever" in text
    assert not any(c in text for c in raw) and "\\u202e" in text
    piped = cli("indexer", "export", "-f", "csv")
    assert evil in piped.stdout


def test_thumbnails_of_records_gone_and_strays_are_pruned(indexed: Path, tmp_path: Path) -> None:
    from query.server import prune_thumbnails

    api = _api()
    red = _id_of("red.jpg")
    assert api.get(f"/api/images/{red}/thumbnail").status_code == 200
    thumbs = Path(os.environ["INDEXER_HOME"]) / "thumbs"
    stale = thumbs / f"{'0' * 32}.jpg"  # a record deleted since
    stale.write_bytes(b"old")
    (thumbs / "notes.txt").write_text("not ours")
    victim = tmp_path / "victim.jpg"
    victim.write_bytes(b"keep")
    os.symlink(victim, thumbs / f"{'1' * 32}.jpg")
    assert prune_thumbnails(thumbs, QueryClient.from_env()) == 3
    assert sorted(p.name for p in thumbs.iterdir()) == [f"{red}.jpg"]
    assert victim.read_bytes() == b"keep"
