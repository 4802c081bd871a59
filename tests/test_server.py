"""`query serve`'s JSON API on a real indexed collection (fake Gemini, embedded Chroma)."""

from __future__ import annotations

import io
import time
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from indexer.cli import app as indexer_app
from indexer.errors import ConfigError
from query.client import QueryClient
from query.server import MAX_UPLOAD_BYTES, check_exposure, create_app
from tests.conftest import _free_port, garment_image
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
        "caption": "Green summer shorts.",
    },
}


@pytest.fixture
def photos(fake: FakeGemini, env: dict[str, str], tmp_path: Path) -> Path:
    fake.by_color.update(ANSWERS)
    folder = tmp_path / "photos"
    for color in ANSWERS:
        garment_image(folder / f"{color}.jpg", color)
    assert CliRunner().invoke(indexer_app, ["run", str(folder)]).exit_code == 0
    return folder


@pytest.fixture
def api(photos: Path, tmp_path: Path) -> TestClient:
    return TestClient(
        create_app(QueryClient.from_env(), tmp_path / "thumbs"), base_url="http://127.0.0.1"
    )


def test_text_search_with_filters_matches_the_client(api: TestClient) -> None:
    hits = api.get("/api/search", params={"q": "summer dress", "limit": 5}).json()
    assert Path(hits[0]["path"]).name == "red.jpg"
    assert hits[0]["thumbnail"] == f"/api/images/{hits[0]['id']}/thumbnail"
    same = QueryClient.from_env().text("summer dress", limit=5)
    assert [h["id"] for h in hits] == [h.id for h in same]
    summer = api.get("/api/search", params=[("q", "clothes"), ("where", "season=summer")]).json()
    assert {Path(h["path"]).name for h in summer} == {"red.jpg", "green.jpg"}
    both = api.get(
        "/api/search", params=[("q", "x"), ("where", "season=summer"), ("where", "color=green")]
    ).json()
    assert [Path(h["path"]).name for h in both] == ["green.jpg"]


def test_bad_requests_get_the_clients_error_messages(api: TestClient) -> None:
    bad = api.get("/api/search", params=[("q", "x"), ("where", "season=monsoon")])
    assert bad.status_code == 400 and "summer" in bad.json()["detail"]  # lists allowed values
    assert api.get("/api/search", params={"q": "  "}).status_code == 400
    assert api.get("/api/search", params={"q": "x", "limit": 0}).status_code == 422


def test_health_says_what_the_store_holds_without_a_token(photos: Path, tmp_path: Path) -> None:
    client = QueryClient.from_env()
    api = TestClient(
        create_app(client, tmp_path / "thumbs", token="s3cret"), base_url="http://127.0.0.1"
    )
    health = api.get("/api/health")
    assert health.status_code == 200
    assert health.json() == {
        "status": "ok",
        "records": 3,
        "provider": "gemini",
        "embedding_model": client.settings.embedding_model,
        "store": str(client.settings.store_path),
    }
    assert api.get("/api/images").status_code == 401  # the rest still wants the token


def _started(tmp_path: Path) -> TestClient:
    """A server started on the environment as it is now."""
    return TestClient(
        create_app(QueryClient.from_env(), tmp_path / "thumbs"), base_url="http://127.0.0.1"
    )


def test_errors_answer_by_what_they_mean(
    photos: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """400 a bad request, 409 a collection of another model, 500 a misconfiguration the
    operator must fix, 503 with Retry-After a store that does not answer."""
    with monkeypatch.context() as m:
        m.setenv("GEMINI_EMBEDDING_DIM", "256")
        api = _started(tmp_path)
        search, health = api.get("/api/search", params={"q": "dress"}), api.get("/api/health")
        assert search.status_code == 409, search.text
        assert "built with gemini:" in search.json()["detail"]
        assert health.status_code == 200
    with monkeypatch.context() as m:
        m.delenv("GOOGLE_API_KEY")
        api = _started(tmp_path)
        search, health = api.get("/api/search", params={"q": "dress"}), api.get("/api/health")
        assert search.status_code == 500 and "GOOGLE_API_KEY" in search.json()["detail"]
        assert health.status_code == 200  # the store answers; the model is another matter
    with monkeypatch.context() as m:
        m.setenv("CHROMA_HOST", "127.0.0.1")
        m.setenv("CHROMA_PORT", str(_free_port()))  # nothing listens there
        m.setenv("INDEXER_STORE_RETRY_SECONDS", "0")  # `query serve` waits 5 s at most
        api = _started(tmp_path)
        search, health = api.get("/api/search", params={"q": "dress"}), api.get("/api/health")
        for answer in (search, health):
            assert answer.status_code == 503, answer.text
            assert int(answer.headers["retry-after"]) > 0
            assert "\n" not in answer.json()["detail"]
        assert health.json()["status"] == "unavailable"


def test_upload_search_finds_the_similar_image_and_stores_nothing(
    api: TestClient, tmp_path: Path
) -> None:
    query_photo = garment_image(tmp_path / "q.png", "blue", size=(300, 300))
    before = QueryClient.from_env()._ready()[0].count()
    response = api.post(
        "/api/search/image", files={"file": ("q.png", query_photo.read_bytes(), "image/png")}
    )
    assert response.status_code == 200, response.text
    assert Path(response.json()[0]["path"]).name == "blue.jpg"
    assert QueryClient.from_env()._ready()[0].count() == before
    junk = api.post("/api/search/image", files={"file": ("x.jpg", b"not an image", "image/jpeg")})
    assert junk.status_code == 400 and "not a recognised image format" in junk.json()["detail"]
    big = io.BytesIO(b"\0" * (MAX_UPLOAD_BYTES + 1))
    assert api.post("/api/search/image", files={"file": ("big.jpg", big)}).status_code == 413


def test_searches_page_like_browsing_and_a_photos_next_page_calls_no_model(
    api: TestClient, fake: FakeGemini, tmp_path: Path
) -> None:
    def found(**page: int | str) -> list[str]:
        answer = api.get("/api/search", params={"q": "summer clothes", **page})
        assert answer.status_code == 200, answer.text
        return [h["id"] for h in answer.json()]

    whole = found(limit=3)
    assert found(limit=2) + found(limit=2, offset=2) == whole and len(whole) == 3
    deep = api.get("/api/search", params={"q": "x", "limit": 400, "offset": 200})
    assert deep.status_code == 400 and "at most 500" in deep.json()["detail"]

    photo = garment_image(tmp_path / "q.png", "green", size=(300, 300)).read_bytes()

    def like(**page: int) -> list[str]:
        files = {"file": ("q.png", photo, "image/png")}
        answer = api.post("/api/search/image", params=page, files=files)
        assert answer.status_code == 200, answer.text
        return [h["id"] for h in answer.json()]

    whole = like(limit=3)
    calls = len(fake.requests)
    assert like(limit=1) + like(limit=2, offset=1) == whole
    assert len(fake.requests) == calls  # the photo was described and embedded once


def test_images_are_served_by_id_only(api: TestClient, photos: Path) -> None:
    hit = api.get("/api/search", params={"q": "jeans", "limit": 1}).json()[0]
    original = api.get(hit["image"])
    assert original.status_code == 200
    assert original.content == (photos / "blue.jpg").read_bytes()
    record = api.get(f"/api/images/{hit['id']}").json()
    assert record["keywords"]["garment"] == ["jeans"] and record["caption"] == "Blue denim jeans."
    secret = photos.parent / "secret.txt"
    secret.write_text("not for the web")
    for attempt in (
        "/api/images/../../../../etc/passwd",
        "/api/images/%2e%2e%2f%2e%2e%2fetc%2fpasswd/file",
        f"/api/images/{secret}/file",
        "/api/images/..%2Fsecret.txt/file",
        "/api/images/" + "0" * 32 + "/file",  # well-formed, not in the collection
        "/api/images/" + hit["id"] + "%2F..%2F..%2Fsecret.txt/file",
        "/static/../../secret.txt",
    ):
        response = api.get(attempt)
        assert response.status_code == 404, attempt
        assert b"not for the web" not in response.content


def test_thumbnails_are_made_once_and_cached(api: TestClient, tmp_path: Path) -> None:
    hit = api.get("/api/search", params={"q": "dress", "limit": 1}).json()[0]
    first = api.get(hit["thumbnail"])
    assert first.status_code == 200 and first.headers["content-type"] == "image/jpeg"
    cached = tmp_path / "thumbs" / f"{hit['id']}.jpg"
    made = cached.stat().st_mtime_ns
    assert api.get(hit["thumbnail"]).content == first.content
    assert cached.stat().st_mtime_ns == made
    from PIL import Image

    with Image.open(cached) as img:
        assert max(img.size) <= 320


def test_openapi_describes_the_api(api: TestClient) -> None:
    spec = api.get("/openapi.json").json()
    paths = {"/api/search", "/api/search/image", "/api/similar/{image_id}", "/api/facets"}
    assert paths | {"/api/health"} <= set(spec["paths"])
    params = {p["name"] for p in spec["paths"]["/api/search"]["get"]["parameters"]}
    assert params == {"q", "where", "exclude", "limit", "offset", "min_score"}
    assert api.get("/").status_code == 200 and "<title>Clothing search" in api.get("/").text


def test_a_token_guards_everything_when_set(photos: Path, tmp_path: Path) -> None:
    api = TestClient(
        create_app(QueryClient.from_env(), tmp_path / "thumbs", token="s3cret"),
        base_url="http://127.0.0.1",
    )
    assert api.get("/api/facets").status_code == 401
    assert api.get("/").status_code == 401
    assert api.get("/api/facets", headers={"Authorization": "Bearer s3cret"}).status_code == 200
    assert api.get("/api/facets", headers={"Authorization": "Bearer wrong"}).status_code == 401
    # The page is opened once with ?token=; its cookie then carries the API calls.
    assert api.get("/", params={"token": "s3cret"}).status_code == 200
    assert api.get("/api/facets").status_code == 200


def test_listening_beyond_loopback_requires_a_token() -> None:
    check_exposure("127.0.0.1", None)
    check_exposure("localhost", None)
    check_exposure("::1", None)
    check_exposure("0.0.0.0", "token")
    with pytest.raises(ConfigError, match="token"):
        check_exposure("0.0.0.0", None)
    with pytest.raises(ConfigError, match="token"):
        check_exposure("192.168.1.5", None)


def test_serve_refuses_a_public_address_without_a_token(photos: Path) -> None:
    from query.cli import app as query_app

    result = CliRunner().invoke(query_app, ["serve", "--host", "0.0.0.0", "--port", "1"])
    assert result.exit_code == 2 and "access token" in result.output


def test_browse_lists_the_collection_newest_first_with_keyword_counts(
    photos: Path, fake: FakeGemini, tmp_path: Path
) -> None:
    time.sleep(1.1)  # indexing times are kept to the second; the next run is a second later
    fake.by_color["yellow"] = {
        "keywords": {"garment": ["dress"], "season": ["spring"], "color": ["yellow"]},
        "caption": "A yellow spring dress.",
    }
    later = tmp_path / "later"
    garment_image(later / "yellow.jpg", "yellow")
    assert CliRunner().invoke(indexer_app, ["run", str(later)]).exit_code == 0
    api = TestClient(
        create_app(QueryClient.from_env(), tmp_path / "thumbs"), base_url="http://127.0.0.1"
    )
    first = api.get("/api/images", params={"limit": 2}).json()
    assert first["total"] == 4 and first["offset"] == 0
    assert Path(first["images"][0]["path"]).name == "yellow.jpg"  # the newest
    assert first["images"][0]["provider"] == "gemini"
    assert first["images"][0]["thumbnail"].endswith("/thumbnail")
    assert first["counts"]["season"] == {"summer": 2, "fall": 1, "spring": 1}
    assert first["counts"]["garment"]["dress"] == 2
    rest = api.get("/api/images", params={"limit": 2, "offset": 2}).json()
    seen = [i["id"] for i in first["images"] + rest["images"]]
    assert len(set(seen)) == 4  # pages neither repeat nor skip a record
    summer = api.get("/api/images", params=[("where", "season=summer")]).json()
    assert summer["total"] == 2
    assert {Path(i["path"]).name for i in summer["images"]} == {"red.jpg", "green.jpg"}
    assert summer["counts"]["color"] == {"red": 1, "green": 1}  # counted within the filter
    both = api.get("/api/images", params=[("where", "season=summer"), ("where", "color=Green")])
    assert [Path(i["path"]).name for i in both.json()["images"]] == ["green.jpg"]
    typo = api.get("/api/images", params=[("where", "season=sumer")])
    assert typo.status_code == 400 and "did you mean 'summer'?" in typo.json()["detail"]
    assert api.get("/api/images", params={"offset": -1}).status_code == 422


def test_the_rule_asks_a_client_to_wait_as_long_as_a_quota_says() -> None:
    from indexer.errors import (
        EmbeddingMismatchError,
        QuotaExhaustedError,
        StoreBusyError,
        TransientProviderError,
    )
    from query.statuses import RETRY_AFTER_SECONDS, status_of

    assert status_of(TransientProviderError("quota", retry_after=7.2)) == (
        503,
        {"Retry-After": "8"},
    )
    assert status_of(StoreBusyError("busy")) == (503, {"Retry-After": str(RETRY_AFTER_SECONDS)})
    assert status_of(EmbeddingMismatchError("other model")) == (409, {})  # not a StoreError's 503
    assert status_of(ConfigError("no key")) == (500, {})
    # A quota spent for the day: until it resets, not a misconfiguration's 500.
    assert status_of(QuotaExhaustedError("spent", resets_in=48064)) == (
        503,
        {"Retry-After": "48064"},
    )
