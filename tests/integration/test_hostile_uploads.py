"""Hostile uploads over real HTTP: what an authenticated client can make the edge do."""

from __future__ import annotations

import json
import resource
import time

import aiohttp
import pytest

from tests.support.edge_system import Edge

pytestmark = [pytest.mark.slow, pytest.mark.edge(max_upload_bytes=8 * 1024 * 1024)]

ID3_HEADER = b"ID3\x03\0\0\0\0\0\0"


def _peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


@pytest.mark.parametrize("size", [10_000, 4 * 1024 * 1024])
async def test_a_file_of_id3_headers_is_refused_quickly_in_little_memory(
    edge: Edge, size: int
) -> None:
    # Each header announces an empty tag, so a sniffer that follows tags goes one
    # level deeper every ten bytes: 10 KB was a RecursionError (500), 4 MiB 2 GB.
    audio = ID3_HEADER * (size // len(ID3_HEADER))
    form = aiohttp.FormData()
    form.add_field("file", audio, filename="a.mp3", content_type="audio/mpeg")
    before = _peak_rss_mib()
    started = time.monotonic()
    async with edge.session.post(
        f"{edge.url}/api/v1/transcription", data=form, headers=edge.auth()
    ) as response:
        body = await response.json()
    assert time.monotonic() - started < 2.0
    assert response.status == 415, body
    assert body["error"]["code"] == "unsupported_media_type"
    assert _peak_rss_mib() - before < 100


async def test_the_longest_text_is_taken_even_with_every_character_escaped(edge: Edge) -> None:
    # Found by schemathesis: 100,000 characters outside the BMP are 1.2 MB as JSON
    # escaped the way json.dumps does by default, over the former 1 MiB body limit.
    body = json.dumps({"text": "\U0001f600" * 100_000}).encode()
    assert len(body) > 1024 * 1024
    async with edge.session.post(
        f"{edge.url}/api/v1/summarization",
        data=body,
        headers={**edge.auth(), "Content-Type": "application/json"},
    ) as response:
        assert response.status == 202, await response.text()
