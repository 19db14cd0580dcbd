"""Splitting a stream of JSON documents, as curl prints answers one after another."""

from __future__ import annotations

import json


def documents(output: str) -> list[dict[str, object]]:
    """curl prints each answer without a newline: split the stream of JSON documents."""
    decoder, found, index = json.JSONDecoder(), [], 0
    while index < len(output):
        if output[index].isspace():
            index += 1
            continue
        document, index = decoder.raw_decode(output, index)
        found.append(document)
    return found
