"""TFRecord framing and tf.train.Example encoding without TensorFlow."""

from __future__ import annotations

import os

import struct
from pathlib import Path

import numpy as np
import pytest

from training.datasets.example_proto import ExampleFeatures, describe, encode_example
from training.datasets.tfrecord import (
    DatasetFormatError,
    RecordError,
    RecordLocation,
    encode_record,
    iter_records,
    masked_crc32c,
    read_record,
    scan_records,
    write_tfrecord,
)

REAL_SKETCHY = Path(__file__).resolve().parents[4] / "shared" / "fixtures" / "sketchy" / "example_data.tfrecords"
PAYLOADS = [b"first", b"", bytes(range(256)) * 40, b"last record"]


def test_masked_crc32c_matches_the_standard_check_value():
    crc = 0xE3069283  # CRC-32C("123456789"), the published check value
    expected = (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF
    assert masked_crc32c(b"123456789") == expected


def test_frame_layout():
    frame = encode_record(b"abc")
    assert len(frame) == 8 + 4 + 3 + 4
    assert struct.unpack("<Q", frame[:8])[0] == 3
    assert struct.unpack("<I", frame[8:12])[0] == masked_crc32c(frame[:8])
    assert frame[12:15] == b"abc"
    assert struct.unpack("<I", frame[15:])[0] == masked_crc32c(b"abc")


def test_round_trip(tmp_path):
    path = tmp_path / "data.tfrecord"
    written = write_tfrecord(path, PAYLOADS)
    assert scan_records(path) == written
    assert [loc.length for loc in written] == [len(p) for p in PAYLOADS]
    assert list(iter_records(path)) == PAYLOADS
    for i, loc in enumerate(written):
        assert read_record(path, loc.offset, i) == PAYLOADS[i]
    (tmp_path / "empty").write_bytes(b"")
    assert scan_records(tmp_path / "empty") == []


def _written(tmp_path) -> tuple[Path, list[RecordLocation], bytearray]:
    path = tmp_path / "shard.tfrecord"
    locations = write_tfrecord(path, PAYLOADS)
    return path, locations, bytearray(path.read_bytes())


def test_bad_length_crc_names_file_record_and_offset(tmp_path):
    path, locs, data = _written(tmp_path)
    data[locs[2].offset + 9] ^= 0x01  # inside record 2's length checksum
    path.write_bytes(bytes(data))
    with pytest.raises(RecordError, match=rf"shard\.tfrecord: record 2 at byte {locs[2].offset}: length checksum"):
        scan_records(path)
    with pytest.raises(RecordError, match="length checksum"):
        read_record(path, locs[2].offset, 2)


def test_bad_payload_crc_names_file_record_and_offset(tmp_path):
    path, locs, data = _written(tmp_path)
    data[locs[2].offset + 12 + 100] ^= 0x40  # one bit of record 2's payload
    path.write_bytes(bytes(data))
    assert scan_records(path) == locs  # headers are intact
    with pytest.raises(RecordError, match=rf"shard\.tfrecord: record 2 at byte {locs[2].offset}: payload checksum"):
        read_record(path, locs[2].offset, 2)
    with pytest.raises(RecordError, match="record 2 .*payload checksum"):
        list(iter_records(path))
    assert read_record(path, locs[3].offset, 3) == PAYLOADS[3]  # neighbours still read


def test_bad_footer_crc(tmp_path):
    path, locs, data = _written(tmp_path)
    data[locs[1].offset + 12 + 0] ^= 0xFF  # record 1 is empty: this byte is its payload checksum
    path.write_bytes(bytes(data))
    with pytest.raises(RecordError, match="record 1 .*payload checksum"):
        read_record(path, locs[1].offset, 1)


@pytest.mark.parametrize("cut, problem", [(5, "truncated header"), (30, "truncated record"), (1, "truncated record")])
def test_truncated_file(tmp_path, cut, problem):
    path, locs, data = _written(tmp_path)
    last = locs[3]
    keep = {5: last.offset + 5, 30: last.offset + 12 + 5, 1: len(data) - 1}[cut]
    path.write_bytes(bytes(data[:keep]))
    with pytest.raises(RecordError, match=rf"record 3 at byte {last.offset}: {problem}"):
        scan_records(path)
    with pytest.raises(RecordError, match=problem):
        list(iter_records(path))


def test_offset_outside_file(tmp_path):
    path, _, data = _written(tmp_path)
    with pytest.raises(RecordError, match="offset outside the file"):
        read_record(path, len(data) + 10, 7)


def test_example_wire_format_matches_tensorflow():
    # Example{features{feature{key:"a" value{int64_list{value:[1,2]}}}}}, encoded by hand from example.proto:
    # field numbers Example.features=1, Features.feature=1 (map: key=1, value=2), Feature.int64_list=3,
    # Int64List.value=1 packed.
    expected = b"\x0a\x0d\x0a\x0b\x0a\x01a\x12\x06\x1a\x04\x0a\x02\x01\x02"
    assert encode_example({"a": np.array([1, 2])}) == expected
    floats = encode_example({"f": np.array([1.5], np.float32)})  # Feature.float_list=2, packed
    assert floats.endswith(b"\x12\x06\x0a\x04" + struct.pack("<f", 1.5))
    bytes_ = encode_example({"b": [b"xy"]})  # Feature.bytes_list=1
    assert bytes_.endswith(b"\x0a\x04\x0a\x02xy")


def test_example_features_typed_access_and_errors():
    payload = encode_example(
        {
            "ints": np.array([[1, -2], [3, 2**40]]),
            "bools": np.array([True, False]),
            "floats": np.array([0.25, -1.0], np.float32),
            "blobs": [b"\x00\xff", b"png"],
            "one": [7],
        }
    )
    f = ExampleFeatures(payload, "shard-7: record 3 at byte 99")
    assert f.ints("ints").tolist() == [1, -2, 3, 2**40]
    assert f.ints("bools").tolist() == [1, 0]
    assert f.floats("floats", 2).tolist() == [0.25, -1.0]
    assert f.bytes("blobs") == [b"\x00\xff", b"png"]
    assert f.int("one") == 7
    assert describe(payload) == {
        "blobs": ("bytes_list", 2),
        "bools": ("int64_list", 2),
        "floats": ("float_list", 2),
        "ints": ("int64_list", 4),
        "one": ("int64_list", 1),
    }
    with pytest.raises(DatasetFormatError, match=r"shard-7: record 3 at byte 99: missing feature 'nope'"):
        f.bytes("nope")
    with pytest.raises(DatasetFormatError, match="'floats' is a float_list, expected a int64_list"):
        f.ints("floats")
    with pytest.raises(DatasetFormatError, match="'ints' has 4 elements, expected 5"):
        f.ints("ints", 5)
    with pytest.raises(DatasetFormatError, match="'ints' has 4 elements, expected 1"):
        f.int("ints")
    with pytest.raises(DatasetFormatError, match="where: not a tf.train.Example"):
        ExampleFeatures(b"\xff\xff\xff", "where")


@pytest.mark.skipif(  # under CI (CI=true) a missing sample fails instead
    not REAL_SKETCHY.is_file() and os.environ.get("CI") != "true", reason=f"real Sketchy sample absent: {REAL_SKETCHY}"
)
def test_reads_a_file_written_by_tensorflow():
    locations = scan_records(REAL_SKETCHY)
    assert len(locations) == 4
    assert locations[-1].offset + 16 + locations[-1].length == REAL_SKETCHY.stat().st_size
    payloads = list(iter_records(REAL_SKETCHY))
    keys = describe(payloads[0])
    assert keys["actions"] == ("float_list", 7)
    assert keys["pixels/basket_front_left"] == ("bytes_list", 1)
    assert keys["pixels/royale_camera_driver_depth"] == ("float_list", 171 * 224)
    assert keys["gripper/grasp"] == ("int64_list", 1)
    # Our encoder writes what TensorFlow wrote: re-encoding the parsed features gives equal features.
    f = ExampleFeatures(payloads[0], "real")
    again = ExampleFeatures(encode_example({"actions": f.floats("actions"), "jpeg": f.bytes("pixels/usbcam0")}), "re")
    assert np.array_equal(again.floats("actions"), f.floats("actions"))
    assert again.bytes("jpeg") == f.bytes("pixels/usbcam0")
