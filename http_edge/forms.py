"""multipart/form-data: streamed from the socket with per-field limits, or parsed from bytes.

Only the fields an endpoint names are taken, each at most once, each bounded
while it is read: an oversized file is refused (413) when its limit is
passed, not after it has all arrived.
"""

from __future__ import annotations

from collections.abc import Mapping
from email.message import Message
from typing import Final

from aiohttp import BodyPartReader, web
from aiohttp.http_exceptions import HttpProcessingError

from http_edge.bodies import too_large
from http_edge.errors import ApiError

FORM: Final = "multipart/form-data"
_CHUNK: Final = 64 * 1024


def require_form(request: web.Request) -> None:
    if request.content_type != FORM:
        raise ApiError(415, "unsupported_media_type", f"send the body as {FORM}")


def _malformed(detail: str) -> ApiError:
    return ApiError(400, "invalid_form", f"malformed multipart/form-data: {detail}")


async def read_form(
    request: web.Request, *, files: Mapping[str, int], texts: Mapping[str, int]
) -> dict[str, bytes]:
    """Read the form field by field; ``files`` and ``texts`` map field names to byte limits.

    A file over its limit is a 413, a text field over its limit a 400.
    """
    require_form(request)
    try:
        reader = await request.multipart()
        fields: dict[str, bytes] = {}
        while (part := await reader.next()) is not None:
            if not isinstance(part, BodyPartReader):
                raise _malformed("nested multipart bodies are not accepted")
            name = _accepted_name(part.name, files, texts, fields)
            limit = files.get(name, texts.get(name, 0))
            fields[name] = await _read_part(part, name, limit, is_file=name in files)
    except (ValueError, AssertionError, HttpProcessingError) as error:
        raise _malformed(type(error).__name__) from None
    return fields


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


def parse_form(
    content_type: str, body: bytes, *, files: Mapping[str, int], texts: Mapping[str, int]
) -> dict[str, bytes]:
    """The same rules as :func:`read_form`, for a body already in memory."""
    boundary = _boundary(content_type)
    delimiter = b"\r\n--" + boundary
    sections = (b"\r\n" + body).split(delimiter)
    if len(sections) < 2:
        raise _malformed("no boundary found")
    fields: dict[str, bytes] = {}
    for section in sections[1:]:
        if section.startswith(b"--"):
            return fields
        head, separator, content = section.partition(b"\r\n\r\n")
        if not separator or not head.lstrip(b" \t").startswith(b"\r\n"):
            raise _malformed("a part has no header block")
        name = _accepted_name(_field_name(head), files, texts, fields)
        limit = files.get(name, texts.get(name, 0))
        if len(content) > limit:
            if name in files:
                raise too_large(limit)
            raise ApiError(400, "invalid_request", f"form field {name!r} is too long")
        fields[name] = content
    raise _malformed("the closing boundary is missing")


def _boundary(content_type: str) -> bytes:
    header = Message()
    header["Content-Type"] = content_type
    boundary = header.get_param("boundary")
    if header.get_content_type() != FORM or not isinstance(boundary, str):
        raise _malformed("the Content-Type names no boundary")
    if not 1 <= len(boundary) <= 70 or not boundary.isascii():
        raise _malformed("the boundary is not a valid one")
    return boundary.encode("ascii")


def _field_name(head: bytes) -> str | None:
    for line in head.decode("latin-1").split("\r\n"):
        key, separator, value = line.partition(":")
        if separator and key.strip().lower() == "content-disposition":
            header = Message()
            header["Content-Disposition"] = value.strip()
            name = header.get_param("name", header="content-disposition")
            return name if isinstance(name, str) else None
    return None
