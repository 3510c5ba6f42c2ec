"""TFRecord framing, read and written without TensorFlow.

A TFRecord file is a sequence of records, each framed as::

    uint64 length (little endian) | uint32 masked_crc32c(length bytes)
    payload (length bytes)        | uint32 masked_crc32c(payload)

Both checksums are verified on every read so a damaged file raises a :class:`RecordError` naming the
file, the record index and its byte offset instead of handing garbage to a decoder.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import NamedTuple

import google_crc32c

_HEADER = struct.Struct("<QI")  # length, masked crc of the length
_FOOTER = struct.Struct("<I")  # masked crc of the payload
_MASK_DELTA = 0xA282EAD8


class DatasetFormatError(ValueError):
    """A dataset file does not have the expected content (missing key, bad shape, undecodable image)."""


class RecordError(DatasetFormatError):
    """A TFRecord frame is damaged: truncated, or a checksum does not match."""


class RecordLocation(NamedTuple):
    """Where one record's frame starts in its file, and the payload length."""

    offset: int
    length: int


def masked_crc32c(data: bytes) -> int:
    """CRC32C rotated right by 15 bits plus a constant, as TFRecord stores it."""
    crc = google_crc32c.value(data)
    return (((crc >> 15) | (crc << 17)) + _MASK_DELTA) & 0xFFFFFFFF


def encode_record(payload: bytes) -> bytes:
    """One complete frame (header, payload, footer) for ``payload``."""
    length = struct.pack("<Q", len(payload))
    return length + struct.pack("<I", masked_crc32c(length)) + payload + _FOOTER.pack(masked_crc32c(payload))


def write_tfrecord(path: str | os.PathLike, payloads: Iterable[bytes]) -> list[RecordLocation]:
    """Write ``payloads`` as an uncompressed TFRecord file; returns where each record was written."""
    locations = []
    offset = 0
    with open(path, "wb") as f:
        for payload in payloads:
            frame = encode_record(bytes(payload))
            f.write(frame)
            locations.append(RecordLocation(offset, len(payload)))
            offset += len(frame)
    return locations


def _where(path: str | os.PathLike, index: int | None, offset: int) -> str:
    record = f"record {index}" if index is not None else "record"
    return f"{path}: {record} at byte {offset}"


def _read_header(f, path, index: int | None, offset: int, file_size: int) -> int:
    """Read and check the header at ``offset``; returns the payload length."""
    header = f.read(_HEADER.size)
    if len(header) < _HEADER.size:
        raise RecordError(f"{_where(path, index, offset)}: truncated header ({len(header)} of {_HEADER.size} bytes)")
    length, length_crc = _HEADER.unpack(header)
    if masked_crc32c(header[:8]) != length_crc:
        raise RecordError(
            f"{_where(path, index, offset)}: length checksum mismatch (corrupted header, or not a TFRecord file)"
        )
    needed = offset + _HEADER.size + length + _FOOTER.size
    if needed > file_size:
        raise RecordError(
            f"{_where(path, index, offset)}: truncated record: header announces "
            f"{length} payload bytes, file ends {needed - file_size} bytes short"
        )
    return length


def scan_records(path: str | os.PathLike) -> list[RecordLocation]:
    """Locate every record by walking the headers only (payloads are skipped, not read).

    Length checksums and truncation are checked here; payload checksums when a record is read.
    """
    path = Path(path)
    file_size = path.stat().st_size
    locations = []
    offset = 0
    with open(path, "rb") as f:
        while offset < file_size:
            length = _read_header(f, path, len(locations), offset, file_size)
            locations.append(RecordLocation(offset, length))
            offset += _HEADER.size + length + _FOOTER.size
            f.seek(offset)
    return locations


def _read_payload(f, path, index: int | None, offset: int, file_size: int) -> bytes:
    length = _read_header(f, path, index, offset, file_size)
    payload = f.read(length)
    (payload_crc,) = _FOOTER.unpack(f.read(_FOOTER.size))
    if masked_crc32c(payload) != payload_crc:
        raise RecordError(f"{_where(path, index, offset)}: payload checksum mismatch (corrupted data)")
    return payload


def read_record(path: str | os.PathLike, offset: int, index: int | None = None) -> bytes:
    """The checked payload of the record whose frame starts at ``offset`` (``index`` only names it in errors)."""
    file_size = os.path.getsize(path)
    if not 0 <= offset < file_size:
        raise RecordError(f"{_where(path, index, offset)}: offset outside the file ({file_size} bytes)")
    with open(path, "rb") as f:
        f.seek(offset)
        return _read_payload(f, path, index, offset, file_size)


def iter_records(path: str | os.PathLike) -> Iterator[bytes]:
    """Every checked payload of a file, in order."""
    file_size = os.path.getsize(path)
    offset = 0
    index = 0
    with open(path, "rb") as f:
        while offset < file_size:
            payload = _read_payload(f, path, index, offset, file_size)
            yield payload
            offset += _HEADER.size + len(payload) + _FOOTER.size
            index += 1
