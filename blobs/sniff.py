"""Recognise audio by its first bytes, never by its name or declared type."""

from __future__ import annotations

from typing import Final

SNIFF_BYTES: Final = 4096
"""Pass at least this many leading bytes (or the whole file, if shorter)."""

WAV: Final = "audio/wav"
FLAC: Final = "audio/flac"
MPEG: Final = "audio/mpeg"
OGG: Final = "audio/ogg"

# Codec identification packets that open the first page of an Ogg audio stream.
# Other Ogg payloads (Theora video, Skeleton, ...) are not audio.
_OGG_AUDIO_CODECS: Final = (b"\x01vorbis", b"OpusHead", b"\x7fFLAC", b"Speex   ")

# MPEG audio frame header tables, indexed by the header's bit fields.
# Version bits: 0 = MPEG 2.5, 1 = reserved, 2 = MPEG 2, 3 = MPEG 1.
# Layer bits: 0 = reserved, 1 = Layer III, 2 = Layer II, 3 = Layer I.
_SAMPLE_RATES: Final = {3: (44100, 48000, 32000), 2: (22050, 24000, 16000), 0: (11025, 12000, 8000)}
# kbit/s for bitrate indexes 1..14 by (MPEG 1?, layer bits); index 0 ("free format")
# and 15 (invalid) are rejected.
_MPEG2_LAYER2_3: Final = (8, 16, 24, 32, 40, 48, 56, 64, 80, 96, 112, 128, 144, 160)
_BITRATES: Final = {
    (True, 3): (32, 64, 96, 128, 160, 192, 224, 256, 288, 320, 352, 384, 416, 448),
    (True, 2): (32, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320, 384),
    (True, 1): (32, 40, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320),
    (False, 3): (32, 48, 56, 64, 80, 96, 112, 128, 144, 160, 176, 192, 224, 256),
    (False, 2): _MPEG2_LAYER2_3,
    (False, 1): _MPEG2_LAYER2_3,
}


def sniff_audio(head: bytes) -> str | None:
    """The audio media type of a file starting with ``head``, or None if not audio we take.

    Only the first :data:`SNIFF_BYTES` are looked at, without recursion: the cost is
    the same for a 4 KiB file as for a 25 MiB one, whatever the bytes are.
    """
    view = head[:SNIFF_BYTES]  # at most one 4 KiB copy
    if view[:3] == b"ID3":
        # FLAC and MP3 both get one ID3 tag prepended; other formats behind one, and
        # a tag behind a tag, are not ours.
        start = _after_id3(view)
        if start is None:
            return None
        if start >= len(view):
            # The tag runs past what we were given: long tags (cover art) are normal.
            return MPEG
        kind = _sniff_plain(view[start:])
        return kind if kind in (MPEG, FLAC) else None
    return _sniff_plain(view)


def _sniff_plain(head: bytes) -> str | None:
    if head[:4] == b"RIFF" and head[8:12] == b"WAVE":
        return WAV
    if head[:4] == b"fLaC":
        return FLAC if _is_flac(head) else None
    if head[:4] == b"OggS":
        return OGG if _is_ogg_audio(head) else None
    if _mpeg_frame_length(head, 0) is not None:
        return MPEG if _is_mpeg_stream(head) else None
    return None


def _is_flac(head: bytes) -> bool:
    # The first metadata block is always STREAMINFO (type 0, the top bit flags
    # the last block) and STREAMINFO is always 34 bytes long.
    return len(head) >= 8 and head[4] & 0x7F == 0 and head[5:8] == b"\x00\x00\x22"


def _is_ogg_audio(head: bytes) -> bool:
    # Page header: "OggS", version 0, flags (only the low three bits are defined; a
    # stream's first page carries "beginning of stream", 0x02), 8 bytes granule,
    # 4 serial, 4 sequence, 4 CRC, then the segment count and table. The first
    # packet follows the table.
    if len(head) < 27 or head[4] != 0 or head[5] & 0xF8 or not head[5] & 0x02:
        return False
    packet = 27 + head[26]
    return head[packet : packet + 8].startswith(_OGG_AUDIO_CODECS)


def _after_id3(head: bytes) -> int | None:
    """Where the ID3v2 tag opening ``head`` ends, or None if it is not a valid one."""
    # ID3v2 header: "ID3", major version 2..4, revision, flags, and a 28-bit
    # "syncsafe" size (four bytes, top bit clear) of the tag after the header.
    if len(head) < 10 or head[3] not in (2, 3, 4) or head[4] == 0xFF:
        return None
    if any(b & 0x80 for b in head[6:10]):
        return None
    size = (head[6] << 21) | (head[7] << 14) | (head[8] << 7) | head[9]
    footer = 10 if head[5] & 0x10 else 0
    return 10 + size + footer


def _is_mpeg_stream(head: bytes) -> bool:
    # A single valid-looking header happens by chance in about 1 of 7000 random
    # inputs, so where the next frame is within reach it must be there too.
    length = _mpeg_frame_length(head, 0)
    assert length is not None
    if len(head) < length + 4:
        return True
    return _mpeg_frame_length(head, length) is not None


def _mpeg_frame_length(head: bytes, at: int) -> int | None:
    """Length in bytes of the MPEG audio frame whose header starts at ``at``, or None."""
    if len(head) < at + 4:
        return None
    b1, b2, b3 = head[at + 1], head[at + 2], head[at + 3]
    if head[at] != 0xFF or b1 & 0xE0 != 0xE0:
        return None
    version, layer = (b1 >> 3) & 0x03, (b1 >> 1) & 0x03
    bitrate_index, rate_index, padding = b2 >> 4, (b2 >> 2) & 0x03, (b2 >> 1) & 0x01
    emphasis = b3 & 0x03
    if version == 1 or layer == 0 or bitrate_index in (0, 15) or rate_index == 3 or emphasis == 2:
        return None
    mpeg1 = version == 3
    sample_rate = _SAMPLE_RATES[version][rate_index]
    bitrate = _BITRATES[(mpeg1, layer)][bitrate_index - 1] * 1000
    if layer == 3:  # Layer I: 4-byte slots
        return (12 * bitrate // sample_rate + padding) * 4
    if layer == 1 and not mpeg1:  # Layer III of MPEG 2 and 2.5: half the samples per frame
        return 72 * bitrate // sample_rate + padding
    return 144 * bitrate // sample_rate + padding
