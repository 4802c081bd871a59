"""A Chroma server beyond this machine's trust: `chroma run` behind a real reverse proxy
(Debian's nginx) that terminates TLS with a certificate this test makes and refuses every
request without the token. Two sharded workers index through it, `query` and `query serve`
read through it, and a wrong token or an untrusted certificate is one line, not a trace."""

from __future__ import annotations

import json
import os
import pwd
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.conftest import ChromaServer, _free_port, garment_image, query_serve
from tests.fake_gemini import FakeGemini

TOKEN = "proxy-token-0123456789"
NGINX = """
# Workers as the test's own user: they buffer request bodies in the test's folder.
user {user};
worker_processes 1;
daemon off;
pid {dir}/nginx.pid;
error_log {dir}/error.log;
events {{ worker_connections 256; }}
http {{
    access_log off;
    client_body_temp_path {dir}/body;
    proxy_temp_path {dir}/proxy;
    fastcgi_temp_path {dir}/fastcgi;
    uwsgi_temp_path {dir}/uwsgi;
    scgi_temp_path {dir}/scgi;
    client_max_body_size 64m;
    server {{
        listen 127.0.0.1:{port} ssl;
        ssl_certificate {dir}/cert.pem;
        ssl_certificate_key {dir}/key.pem;
        location / {{
            if ($http_x_chroma_token != "{token}") {{ return 401; }}
            proxy_pass http://127.0.0.1:{upstream};
            proxy_http_version 1.1;
            proxy_set_header Host $host;
        }}
    }}
}}
"""


@dataclass
class Proxy:
    port: int
    ca_file: Path


def _certificate(folder: Path) -> Path:
    """A self-signed certificate for 127.0.0.1, which the client is told to trust."""
    subprocess.run(
        [
            *("openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2"),
            *("-keyout", str(folder / "key.pem"), "-out", str(folder / "cert.pem")),
            *("-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1"),
        ],
        check=True,
        capture_output=True,
    )
    return folder / "cert.pem"


@pytest.fixture
def proxy(chroma_server: ChromaServer, tmp_path: Path) -> Iterator[Proxy]:
    nginx = shutil.which("nginx") or (
        "/usr/sbin/nginx" if Path("/usr/sbin/nginx").exists() else None
    )
    if nginx is None or shutil.which("openssl") is None:
        pytest.skip("nginx and openssl are not installed (.ci/run installs them)")
    folder = tmp_path / "nginx"
    folder.mkdir()
    ca_file = _certificate(folder)
    port = _free_port()
    conf = folder / "nginx.conf"
    user = pwd.getpwuid(os.getuid()).pw_name
    conf.write_text(
        NGINX.format(dir=folder, port=port, token=TOKEN, upstream=chroma_server.port, user=user)
    )
    proc = subprocess.Popen(
        [nginx, "-p", str(folder), "-c", str(conf), "-e", str(folder / "error.log")],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.STDOUT,
    )
    deadline = time.monotonic() + 60
    try:
        while True:
            try:
                httpx.get(f"https://127.0.0.1:{port}/", verify=str(ca_file), timeout=2)
                break
            except httpx.TransportError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    log = (
                        (folder / "error.log").read_text()
                        if (folder / "error.log").exists()
                        else ""
                    )
                    raise RuntimeError(f"nginx did not start: {log[-2000:]}") from None
                time.sleep(0.1)
        yield Proxy(port, ca_file)
    finally:
        proc.terminate()
        proc.wait(timeout=20)


@pytest.fixture
def remote(env: dict[str, str], proxy: Proxy, monkeypatch: pytest.MonkeyPatch) -> Proxy:
    monkeypatch.setenv("CHROMA_HOST", "127.0.0.1")
    monkeypatch.setenv("CHROMA_PORT", str(proxy.port))
    monkeypatch.setenv("CHROMA_SSL", "true")
    monkeypatch.setenv("CHROMA_CA_FILE", str(proxy.ca_file))
    monkeypatch.setenv("CHROMA_TOKEN", TOKEN)
    monkeypatch.setenv("INDEXER_IMAGE_VECTORS", "false")  # several processes start here
    return proxy


def run(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", *args],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, **env},
    )


def one_error_line(done: subprocess.CompletedProcess[str]) -> str:
    errors = [ln for ln in done.stderr.splitlines() if ln.startswith("error:")]
    assert done.returncode == 2 and len(errors) == 1, done.stderr
    assert "Traceback" not in done.stderr, done.stderr
    return errors[0]


def test_workers_queries_and_the_gallery_go_through_tls_and_a_token(
    remote: Proxy, fake: FakeGemini, tmp_path: Path
) -> None:
    base = f"https://127.0.0.1:{remote.port}"
    assert httpx.get(f"{base}/api/v2/heartbeat", verify=str(remote.ca_file)).status_code == 401
    folder = tmp_path / "photos"
    for i, color in enumerate(["red", "blue", "green", "yellow", "black", "white"]):
        garment_image(folder / f"{i}.png", color, size=(200 + i, 240))

    workers = [
        subprocess.Popen(
            [sys.executable, "-m", "indexer", "run", str(folder), "--shard", f"{k}/2"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for k in (1, 2)
    ]
    outcomes = [(*w.communicate(timeout=300), w.returncode) for w in workers]
    for out, errors, code in outcomes:
        assert code == 0, out + errors
    assert sum(int(out.split("indexed ", 1)[1].split(",")[0]) for out, _, _ in outcomes) == 6

    found = run("query", "text", "red dress", "--json", "-n", "6")
    assert found.returncode == 0, found.stderr
    assert len(json.loads(found.stdout)) == 6

    with query_serve(tmp_path / "serve.log") as served:
        health = httpx.get(f"{served}/api/health", timeout=30)
        assert health.status_code == 200, health.text
        assert health.json()["records"] == 6 and health.json()["store"] == base
        page = httpx.get(f"{served}/api/images", timeout=30).json()
        assert page["total"] == 6

    refused = one_error_line(run("indexer", "status", CHROMA_TOKEN="wrong-token"))
    assert "127.0.0.1" in refused and "401" in refused, refused
    untrusted = one_error_line(run("query", "text", "dress", CHROMA_CA_FILE=""))
    assert "certificate" in untrusted.lower()


def test_records_go_to_the_configured_tenant_database(
    remote: Proxy, fake: FakeGemini, chroma_server: ChromaServer, tmp_path: Path
) -> None:
    import chromadb
    from chromadb.config import Settings as ChromaSettings

    admin = chromadb.AdminClient(
        ChromaSettings(
            chroma_api_impl="chromadb.api.fastapi.FastAPI",
            chroma_server_host=chroma_server.host,
            chroma_server_http_port=chroma_server.port,
            anonymized_telemetry=False,
        )
    )
    admin.create_database("shop", tenant="default_tenant")
    garment_image(tmp_path / "photos" / "red.png", "red")
    done = run("indexer", "run", str(tmp_path / "photos"), CHROMA_DATABASE="shop")
    assert done.returncode == 0, done.stderr
    direct = chromadb.HttpClient(
        host=chroma_server.host,
        port=chroma_server.port,
        database="shop",
        settings=ChromaSettings(anonymized_telemetry=False),
    )
    assert direct.get_collection("clothing").count() == 1
    default = chromadb.HttpClient(
        host=chroma_server.host,
        port=chroma_server.port,
        settings=ChromaSettings(anonymized_telemetry=False),
    )
    assert "clothing" not in [c.name for c in default.list_collections()]


def test_a_server_away_behind_the_proxy_is_waited_out(
    remote: Proxy, fake: FakeGemini, chroma_server: ChromaServer, tmp_path: Path
) -> None:
    """While the server restarts, the proxy answers 502 for it: a worker waits that out as
    it waits out a server it reaches directly."""
    garment_image(tmp_path / "photos" / "red.png", "red")
    assert run("indexer", "run", str(tmp_path / "photos")).returncode == 0
    chroma_server.stop()
    status = subprocess.Popen(
        [sys.executable, "-m", "indexer", "status", "--json"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert status.stderr is not None
    said = ""
    while "retrying" not in said:  # the worker has met the proxy's 502 and waits
        line = status.stderr.readline()
        assert line, "the command ended without waiting: " + said
        said += line
    assert "502" in said, said
    chroma_server.start()
    out, errors = status.communicate(timeout=300)
    assert status.returncode == 0, said + errors
    assert json.loads(out)["indexed"] == 1
