"""multipart/form-data: streamed from the socket, part by part, with per-field limits.

Only the fields an endpoint names are taken, each at most once, each bounded
while it is read: an oversized file is refused (413) when its limit is
passed, not after it has all arrived, and the whole body is bounded too.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from typing import Final, cast

from aiohttp import BodyPartReader, MultipartReader, StreamReader, web
from aiohttp.http_exceptions import HttpProcessingError

from http_edge.bodies import refuse_declared_oversize, too_large
from http_edge.errors import ApiError
from http_edge.pace import Pace

FORM: Final = "multipart/form-data"
FORM_OVERHEAD: Final = 64 * 1024
"""Bytes a form may carry besides its fields' contents: boundaries, part headers,
preamble and epilogue."""
_CHUNK: Final = 64 * 1024


def require_form(request: web.Request) -> None:
    if request.content_type != FORM:
        raise ApiError(415, "unsupported_media_type", f"send the body as {FORM}")


def _malformed(detail: str) -> ApiError:
    return ApiError(400, "invalid_form", f"malformed multipart/form-data: {detail}")


class _Tap:
    """The request body as a MultipartReader reads it: every byte counted against
    ``limit`` (preamble, part headers and epilogue too, chunked or not), paced, and kept
    when the caller needs the raw body (btauth/1 signs it).

    aiohttp's reader takes a StreamReader; it uses only the four methods here.
    """

    def __init__(self, content: StreamReader, limit: int, pace: Pace, *, keep: bool) -> None:
        self._content = content
        self._pace = pace
        self.limit = limit
        self.in_preamble = True
        self._count = 0
        self.kept: bytearray | None = bytearray() if keep else None

    def _took(self, data: bytes) -> bytes:
        self._count += len(data)
        if self._count > self.limit:
            if self.in_preamble:
                raise ApiError(
                    413, "too_large", f"the form's preamble is longer than {self.limit} bytes"
                )
            raise too_large(self.limit)
        if self.kept is not None:
            self.kept += data
        return data

    async def readline(self, *, max_line_length: int | None = None) -> bytes:
        line = self._content.readline(max_line_length=max_line_length)
        return self._took(await self._pace.take(line))

    async def read(self, n: int = -1) -> bytes:
        return self._took(await self._pace.take(self._content.read(n)))

    def at_eof(self) -> bool:
        return self._content.at_eof()

    def unread_data(self, data: bytes) -> None:
        self._count -= len(data)
        if self.kept is not None and data:
            del self.kept[-len(data) :]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            self._content.unread_data(data)


async def read_form(
    request: web.Request,
    *,
    files: Mapping[str, int],
    texts: Mapping[str, int],
    keep_raw: bool = False,
) -> tuple[dict[str, bytes], bytes]:
    """Read the form part by part; ``files`` and ``texts`` map field names to byte limits.

    A file over its limit, or a body over the sum of the limits and
    :data:`FORM_OVERHEAD`, is a 413, a text field over its limit a 400; the first
    bad part ends the reading. Returns the fields, and the raw body if ``keep_raw``
    (else ``b""``), read to its end.
    """
    require_form(request)
    limit = sum(files.values()) + sum(texts.values()) + FORM_OVERHEAD
    refuse_declared_oversize(request, limit)
    # Until the first part is found, only the preamble's own allowance.
    tap = _Tap(request.content, FORM_OVERHEAD, Pace.of(request), keep=keep_raw)
    try:
        reader = MultipartReader(
            request.headers,
            cast(StreamReader, tap),
            max_field_size=request.protocol.max_field_size,
            max_headers=request.protocol.max_headers,
        )
        fields: dict[str, bytes] = {}
        while (part := await reader.next()) is not None:
            tap.limit, tap.in_preamble = limit, False
            if not isinstance(part, BodyPartReader):
                raise _malformed("nested multipart bodies are not accepted")
            name = _accepted_name(part.name, files, texts, fields)
            field_limit = files.get(name, texts.get(name, 0))
            fields[name] = await _read_part(part, name, field_limit, is_file=name in files)
        if keep_raw:
            while await tap.read(_CHUNK):
                pass  # the epilogue: signed with the rest
    except (ValueError, AssertionError, HttpProcessingError) as error:
        raise _malformed(type(error).__name__) from None
    return fields, bytes(tap.kept) if tap.kept is not None else b""


def _accepted_name(
    name: str | None, files: Mapping[str, int], texts: Mapping[str, int], seen: Mapping[str, bytes]
) -> str:
    if name is None:
        raise _malformed("a part has no field name")
    if name not in files and name not in texts:
        expected = ", ".join(sorted({*files, *texts}))
        raise ApiError(400, "invalid_request", f"unknown form field {name!r} (expected {expected})")
    if name in seen:
        raise ApiError(400, "invalid_request", f"form field {name!r} given twice")
    return name


async def _read_part(part: BodyPartReader, name: str, limit: int, *, is_file: bool) -> bytes:
    chunks: list[bytes] = []
    size = 0
    while chunk := await part.read_chunk(_CHUNK):
        size += len(chunk)
        if size > limit:
            if is_file:
                raise too_large(limit)
            raise ApiError(400, "invalid_request", f"form field {name!r} is too long")
        chunks.append(chunk)
    return b"".join(chunks)
