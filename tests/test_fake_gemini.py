"""The fake speaks the real protocol: the real SDK, pointed at it, sends and parses what it
would with Google's API (here, what no code of ours calls yet)."""

from __future__ import annotations

import time
import warnings

from tests.fake_gemini import API_KEY, FakeGemini, fake_embedding


def test_an_embedding_batch_job_created_and_read_through_the_sdk(fake: FakeGemini) -> None:
    from google import genai
    from google.genai import types

    fake.batch_seconds = 0.2
    client = genai.Client(
        api_key=API_KEY,
        http_options=types.HttpOptions(base_url=fake.base_url, api_version="v1beta"),
    )
    texts = ["a red dress", "a blue shirt"]
    contents = [types.Content(parts=[types.Part.from_text(text=t)]) for t in texts]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # create_embeddings is marked experimental
        job = client.batches.create_embeddings(
            model="gemini-embedding-2",
            src=types.EmbeddingsBatchJobSource(
                inlined_requests=types.EmbedContentBatch(
                    contents=contents, config=types.EmbedContentConfig(output_dimensionality=8)
                )
            ),
        )
    assert job.name is not None and fake.batches[job.name].embeds
    deadline = time.monotonic() + 30
    while (job := client.batches.get(name=job.name)).state != "JOB_STATE_SUCCEEDED":
        assert time.monotonic() < deadline, job.state
        time.sleep(0.05)
    assert job.dest is not None and job.dest.inlined_embed_content_responses is not None
    got = [
        r.response.embedding.values
        for r in job.dest.inlined_embed_content_responses
        if r.response and r.response.embedding
    ]
    assert got == [fake_embedding(t, 8) for t in texts]
