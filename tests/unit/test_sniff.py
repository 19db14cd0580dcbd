"""Audio is recognised by its bytes. Samples are real files (WAV from the stdlib
``wave`` module) or the smallest byte sequences the format specifications accept,
built below with the reason each byte is what it is."""

from __future__ import annotations

import io
import struct
import wave
import zlib

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from blobs import SNIFF_BYTES, sniff_audio


def wav_file() -> bytes:
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(16000)
        w.writeframes(b"\x00\x01" * 1600)
    return buffer.getvalue()


def flac_head(last_block: bool = True) -> bytes:
    # "fLaC", then the mandatory first metadata block, STREAMINFO: a header byte
    # (top bit = last block, low seven bits = type 0), a 24-bit length of 34, and
    # the 34 bytes themselves: min/max block size 4096 (16 bits each), min/max
    # frame size 0 = unknown (24 bits each), then sample rate 44100 (20 bits),
    # channels - 1 (3 bits), bits per sample - 1 (5 bits), total samples (36 bits),
    # and the MD5 of the decoded audio (16 bytes, zero = not computed).
    packed = (44100 << 44) | (1 << 41) | (15 << 36) | 44100
    streaminfo = struct.pack(">HH", 4096, 4096) + bytes(6) + packed.to_bytes(8, "big") + bytes(16)
    assert len(streaminfo) == 34
    return b"fLaC" + bytes([0x80 if last_block else 0x00]) + (34).to_bytes(3, "big") + streaminfo


def _ogg_crc(data: bytes) -> int:
    # Ogg's CRC-32: polynomial 0x04C11DB7, not reflected, initial value 0.
    crc = 0
    for byte in data:
        crc ^= byte << 24
        for _ in range(8):
            crc = ((crc << 1) ^ 0x04C11DB7) if crc & 0x80000000 else crc << 1
            crc &= 0xFFFFFFFF
    return crc


def ogg_first_page(packet: bytes, flags: int = 0x02, version: int = 0) -> bytes:
    # Page header (RFC 3533): "OggS", stream structure version 0, header type
    # flags (0x02 = beginning of stream, set on a stream's first page), granule
    # position 0, serial number, page sequence 0, CRC (computed over the page
    # with the CRC field zeroed), one segment whose lacing value is the packet's
    # length (< 255, so the packet ends on this page).
    header = struct.pack("<4sBBqIIIB", b"OggS", version, flags, 0, 0x1234, 0, 0, 1)
    page = header + bytes([len(packet)]) + packet
    crc = _ogg_crc(page)
    return page[:22] + struct.pack("<I", crc) + page[26:]


# Opus identification header (RFC 7845 section 5.1): magic, version 1, 2 channels,
# pre-skip 312, original rate 48000, output gain 0, channel mapping family 0.
OPUS_HEAD = b"OpusHead" + struct.pack("<BBHIhB", 1, 2, 312, 48000, 0, 0)
# Vorbis identification header (Vorbis I spec 4.2.2): packet type 1, "vorbis",
# version 0, 2 channels, 44100 Hz, bitrates max/nominal/min (0 = unset),
# block sizes 2^8 and 2^11 in one byte, framing bit set.
VORBIS_HEAD = b"\x01vorbis" + struct.pack("<IBIiiiBB", 0, 2, 44100, 0, 128000, 0, 0xB8, 1)
# Theora (video) identification header starts with 0x80 "theora".
THEORA_HEAD = b"\x80theora" + bytes(34)


def mpeg_frame(header: bytes, length: int) -> bytes:
    # A frame is its four-byte header plus the payload up to the frame length the
    # header implies; silence (all zero) is a fine payload for recognition.
    return header + bytes(length - 4)


# MPEG 1 Layer III, 128 kbit/s, 44100 Hz, no padding, no CRC:
#   0xFF 0xFB = sync (11 ones), version 11 (MPEG 1), layer 01 (III), protection 1 (no CRC)
#   0x90      = bitrate index 1001 (128 kbit/s), sample rate 00 (44100), padding 0, private 0
#   0x64      = joint stereo, mode extension, copyright 0, original 1, emphasis 00
# Frame length = 144 * 128000 / 44100 = 417 bytes (rounded down).
MP3_FRAME = mpeg_frame(b"\xff\xfb\x90\x64", 417)
# MPEG 2 Layer III, 64 kbit/s, 22050 Hz: version 10, bitrate index 1000, rate 00.
# Frame length = 72 * 64000 / 22050 = 208 bytes.
MPEG2_L3_FRAME = mpeg_frame(b"\xff\xf3\x80\xc4", 208)
# MPEG 1 Layer II, 192 kbit/s, 48000 Hz: layer 10, bitrate index 1010, rate 01.
# Frame length = 144 * 192000 / 48000 = 576 bytes.
MP2_FRAME = mpeg_frame(b"\xff\xfd\xa4\x04", 576)


def id3v2_tag(body: bytes = b"", major: int = 4) -> bytes:
    # "ID3", version (major, revision 0), flags 0, then the body size as four
    # "syncsafe" bytes carrying seven bits each.
    size = len(body)
    syncsafe = bytes([(size >> 21) & 0x7F, (size >> 14) & 0x7F, (size >> 7) & 0x7F, size & 0x7F])
    return b"ID3" + bytes([major, 0, 0]) + syncsafe + body


# An ID3v2.4 text frame "TIT2" (title), size 6 (syncsafe), no flags, UTF-8 "hello".
TITLE = b"TIT2" + b"\x00\x00\x00\x06" + b"\x00\x00" + b"\x03hello"

POSITIVE = {
    "wav": (wav_file(), "audio/wav"),
    "flac": (flac_head() + bytes(100), "audio/flac"),
    "flac with more metadata blocks": (flac_head(last_block=False), "audio/flac"),
    "ogg opus": (ogg_first_page(OPUS_HEAD), "audio/ogg"),
    "ogg vorbis": (ogg_first_page(VORBIS_HEAD), "audio/ogg"),
    "mp3 frames": (MP3_FRAME * 3, "audio/mpeg"),
    "mpeg 2 layer iii": (MPEG2_L3_FRAME * 3, "audio/mpeg"),
    "mpeg 1 layer ii": (MP2_FRAME * 3, "audio/mpeg"),
    "mp3 with id3 tag": (id3v2_tag(TITLE) + MP3_FRAME * 2, "audio/mpeg"),
    "mp3 with id3v2.3 tag": (id3v2_tag(TITLE, major=3) + MP3_FRAME * 2, "audio/mpeg"),
    "id3 tag longer than the head": (id3v2_tag(bytes(10_000))[:SNIFF_BYTES], "audio/mpeg"),
    "flac behind an id3 tag": (id3v2_tag(TITLE) + flac_head(), "audio/flac"),
    "single mp3 frame": (MP3_FRAME, "audio/mpeg"),
}

NEGATIVE = {
    "empty": b"",
    "text": b"Hello, this is definitely not audio.\n" * 20,
    "json": b'{"text": "RIFF WAVE fLaC OggS ID3"}',
    "png": b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(100),
    "zip": b"PK\x03\x04\x14\x00\x00\x00\x08\x00" + bytes(100),
    "pdf": b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n" + bytes(100),
    "jpeg": b"\xff\xd8\xff\xe0\x00\x10JFIF\x00" + bytes(100),
    "gzip": zlib.compress(b"x" * 100),
    "avi (riff, not wave)": b"RIFF\x00\x10\x00\x00AVI LIST" + bytes(100),
    "riff cut short": b"RIFF\x00\x10",
    "flac magic alone": b"fLaC",
    "flac without streaminfo first": b"fLaC\x84\x00\x00\x28" + bytes(40),
    "ogg theora video": ogg_first_page(THEORA_HEAD),
    "ogg page that does not begin a stream": ogg_first_page(OPUS_HEAD, flags=0x00),
    "ogg of an unknown version": ogg_first_page(OPUS_HEAD, version=1),
    "ogg header cut short": ogg_first_page(OPUS_HEAD)[:20],
    "id3 of an unknown version": b"ID3\x05\x00\x00\x00\x00\x00\x00" + MP3_FRAME,
    "id3 with a size that is not syncsafe": b"ID3\x04\x00\x00\x00\x00\x00\x80" + MP3_FRAME,
    "png behind an id3 tag": id3v2_tag(TITLE) + b"\x89PNG\r\n\x1a\n" + bytes(100),
    # Only one tag is followed: a chain of empty tags once recursed a level per ten bytes.
    "id3 behind an id3 tag": id3v2_tag() * 3 + MP3_FRAME * 2,
    "a run of empty id3 tags": id3v2_tag() * 100_000,
    # ADTS (AAC) shares the 12-bit sync but has layer 00, which MPEG audio reserves.
    "aac adts": b"\xff\xf1\x50\x80\x02\x1f\xfc" + bytes(100),
    "mpeg reserved version": mpeg_frame(b"\xff\xeb\x90\x64", 417) * 2,
    "mpeg bad bitrate": mpeg_frame(b"\xff\xfb\xf0\x64", 417) * 2,
    "mpeg free-format bitrate": b"\xff\xfb\x00\x64" + bytes(500),
    "mpeg reserved sample rate": b"\xff\xfb\x9c\x64" + bytes(500),
    "mpeg reserved emphasis": b"\xff\xfb\x90\x66" + bytes(500),
    "mp3 header followed by garbage": MP3_FRAME + b"garbage" * 100,
    "lone sync byte": b"\xff",
}


@pytest.mark.parametrize(("data", "expected"), POSITIVE.values(), ids=POSITIVE.keys())
def test_audio_is_recognised(data: bytes, expected: str) -> None:
    assert sniff_audio(data[:SNIFF_BYTES]) == expected


@pytest.mark.parametrize("data", NEGATIVE.values(), ids=NEGATIVE.keys())
def test_other_bytes_are_not_audio(data: bytes) -> None:
    assert sniff_audio(data) is None


def test_the_name_plays_no_part() -> None:
    assert sniff_audio(b"song.mp3 audio/mpeg") is None


def test_the_ogg_sample_carries_a_valid_crc() -> None:
    # Guards the hand-built page itself: re-checking the CRC the way a demuxer does.
    page = ogg_first_page(OPUS_HEAD)
    stored = struct.unpack("<I", page[22:26])[0]
    assert _ogg_crc(page[:22] + bytes(4) + page[26:]) == stored


def test_the_wav_sample_is_a_real_wav_file() -> None:
    with wave.open(io.BytesIO(wav_file())) as w:
        assert (w.getnchannels(), w.getframerate(), w.getnframes()) == (1, 16000, 1600)


MAGICS = (b"RIFF", b"fLaC", b"OggS")


@given(st.binary(max_size=SNIFF_BYTES))
def test_random_bytes_without_a_magic_are_never_wav_flac_or_ogg(data: bytes) -> None:
    # An ID3 tag may front a FLAC stream, so it counts as a magic here.
    assume(not data.startswith((*MAGICS, b"ID3")))
    assert sniff_audio(data) in (None, "audio/mpeg")


@given(st.binary(max_size=64))
def test_riff_is_wav_only_with_the_wave_form_type(rest: bytes) -> None:
    assume(rest[4:8] != b"WAVE")
    assert sniff_audio(b"RIFF" + rest) is None


@given(st.binary(max_size=64))
def test_flac_magic_alone_is_not_enough(rest: bytes) -> None:
    assume(not (rest[:1] and rest[0] & 0x7F == 0 and rest[1:4] == b"\x00\x00\x22"))
    assert sniff_audio(b"fLaC" + rest) is None


@given(st.binary(max_size=64))
def test_ogg_magic_alone_is_not_enough(rest: bytes) -> None:
    assume(not any(codec in rest for codec in (b"vorbis", b"OpusHead", b"FLAC", b"Speex")))
    assert sniff_audio(b"OggS" + rest) is None


@given(st.binary(max_size=SNIFF_BYTES))
def test_mpeg_is_only_claimed_for_a_sync_word_or_an_id3_tag(data: bytes) -> None:
    if sniff_audio(data) == "audio/mpeg":
        assert data.startswith(b"ID3") or (data[0] == 0xFF and data[1] & 0xE0 == 0xE0)


@given(st.binary(max_size=2 * SNIFF_BYTES))
def test_sniffing_never_raises(data: bytes) -> None:
    sniff_audio(data)
