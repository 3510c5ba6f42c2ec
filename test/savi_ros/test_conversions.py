"""Reading rclpy messages (`savi_core.tracking.messages`) and building them (`savi_ros.conversions` over
`savi_ros.outputs`); no DDS needed."""

import array

import numpy as np
import pytest

pytest.importorskip("vision_msgs.msg")

from sensor_msgs.msg import Image  # noqa: E402
from std_msgs.msg import Header  # noqa: E402
from vision_msgs.msg import Detection2D, Detection2DArray, ObjectHypothesisWithPose  # noqa: E402

from savi_core.tracking.tracker import Track  # noqa: E402
from savi_core.tracking import messages as inputs  # noqa: E402
from savi_ros import conversions as conv, outputs  # noqa: E402

RNG = np.random.default_rng(0)


def raw_image(arr: np.ndarray, encoding: str, pad: int = 0, bigendian: bool = False) -> Image:
    """Build an Image by hand (independently of numpy_to_image), with `pad` junk bytes per row."""
    h, w = arr.shape[:2]
    wire = arr.astype(arr.dtype.newbyteorder(">" if bigendian else "<"))
    rows = wire.reshape(h, -1).view(np.uint8).reshape(h, -1)
    junk = np.full((h, pad), 0xAB, np.uint8)
    data = np.concatenate([rows, junk], axis=1)
    return Image(
        height=h, width=w, encoding=encoding, is_bigendian=int(bigendian), step=data.shape[1], data=data.tobytes()
    )


@pytest.mark.parametrize(
    "encoding,shape",
    [
        ("rgb8", (5, 7, 3)),
        ("bgr8", (4, 9, 3)),
        ("rgba8", (3, 2, 4)),
        ("bgra8", (6, 5, 4)),
        ("mono8", (5, 3)),
        ("16UC1", (4, 6)),
        ("mono16", (2, 3)),
    ],
)
@pytest.mark.parametrize("pad", [0, 5])
def test_reads_every_layout_with_padding(encoding, shape, pad):
    dtype = np.uint16 if encoding in ("16UC1", "mono16") else np.uint8
    arr = RNG.integers(0, np.iinfo(dtype).max, shape, dtype=dtype)
    out = inputs.image_to_numpy(raw_image(arr, encoding, pad))
    assert out.dtype == dtype and out.shape == shape
    np.testing.assert_array_equal(out, arr)


def test_honours_big_endian():
    arr = np.array([[1, 256, 65535], [258, 0, 4097]], dtype=np.uint16)
    big = raw_image(arr, "16UC1", pad=2, bigendian=True)
    assert bytes(big.data[:2]) == b"\x00\x01"  # really big-endian on the wire
    out = inputs.image_to_numpy(big)
    np.testing.assert_array_equal(out, arr)
    assert out.dtype.isnative


def test_rgb8_from_each_input_encoding():
    rgb = RNG.integers(0, 256, (4, 6, 3), dtype=np.uint8)
    alpha = np.full((4, 6, 1), 7, np.uint8)
    cases = {
        "rgb8": rgb,
        "bgr8": rgb[..., ::-1],
        "rgba8": np.concatenate([rgb, alpha], axis=2),
        "bgra8": np.concatenate([rgb[..., ::-1], alpha], axis=2),
    }
    for encoding, arr in cases.items():
        out = inputs.image_to_rgb8(raw_image(np.ascontiguousarray(arr), encoding, pad=3))
        assert out.flags.c_contiguous and out.dtype == np.uint8
        np.testing.assert_array_equal(out, rgb, err_msg=encoding)
    gray = rgb[..., 0].copy()
    out = inputs.image_to_rgb8(raw_image(gray, "mono8", pad=1))
    np.testing.assert_array_equal(out, np.repeat(gray[..., None], 3, axis=2))


def test_unsupported_or_inconsistent_images_raise_clear_errors():
    msg = raw_image(np.zeros((2, 2, 2), np.uint8), "yuv422")
    with pytest.raises(inputs.UnsupportedEncoding, match="yuv422"):
        inputs.image_to_rgb8(msg)
    with pytest.raises(inputs.UnsupportedEncoding, match="16UC1"):  # valid ROS, not a tracker input
        inputs.image_to_rgb8(raw_image(np.zeros((2, 2), np.uint16), "16UC1"))
    short = raw_image(np.zeros((3, 4, 3), np.uint8), "rgb8")
    short.step = 5
    with pytest.raises(ValueError, match="step"):
        inputs.image_to_numpy(short)
    truncated = raw_image(np.zeros((3, 4, 3), np.uint8), "rgb8")
    truncated.data = bytes(truncated.data)[:-1]
    with pytest.raises(ValueError, match="bytes"):
        inputs.image_to_numpy(truncated)


def test_numpy_to_image_round_trip_and_shape_checks():
    arr = RNG.integers(0, 65535, (5, 8), dtype=np.uint16)
    header = Header(frame_id="cam")
    msg = conv.label_map_to_image(arr, header)
    assert (msg.encoding, msg.height, msg.width, msg.step, msg.is_bigendian) == ("16UC1", 5, 8, 16, 0)
    assert msg.header.frame_id == "cam"
    np.testing.assert_array_equal(inputs.image_to_numpy(msg), arr)
    rgb = RNG.integers(0, 256, (3, 4, 3), dtype=np.uint8)
    np.testing.assert_array_equal(inputs.image_to_rgb8(conv.numpy_to_image(rgb, "rgb8")), rgb)
    with pytest.raises(ValueError, match="rgb8"):
        conv.numpy_to_image(np.zeros((3, 4), np.uint8), "rgb8")


def _wire_round_trip(msg: Image) -> Image:
    from rclpy.serialization import deserialize_message, serialize_message

    return deserialize_message(serialize_message(msg), Image)


@pytest.mark.parametrize(
    "name,make",
    [
        ("tight", lambda a: a),
        ("transposed", lambda a: np.ascontiguousarray(a.swapaxes(0, 1)).swapaxes(0, 1)),
        ("fortran", lambda a: np.asfortranarray(a)),
        ("strided crop", lambda a: np.pad(a, [(1, 2), (3, 0)] + [(0, 0)] * (a.ndim - 2))[1:-2:1, 3:]),
        ("every other column", lambda a: np.repeat(a, 2, axis=1)[:, ::2]),
    ],
)
def test_image_msg_from_any_strides_round_trips_over_the_wire(name, make):
    label_map = RNG.integers(0, 65535, (6, 9), dtype=np.uint16)
    rgb = RNG.integers(0, 256, (5, 7, 3), dtype=np.uint8)
    for arr, encoding in ((label_map, "16UC1"), (rgb, "rgb8")):
        view = make(arr)
        assert name == "tight" or not view.flags.c_contiguous, name
        msg = conv.numpy_to_image(view, encoding)
        assert isinstance(msg.data, array.array) and msg.data.typecode == "B"
        assert len(msg.data) == msg.step * msg.height == arr.nbytes
        np.testing.assert_array_equal(inputs.image_to_numpy(msg), arr)
        np.testing.assert_array_equal(inputs.image_to_numpy(_wire_round_trip(msg)), arr)


def test_image_msg_owns_its_pixels():
    label_map = np.arange(12, dtype=np.uint16).reshape(3, 4)
    msg = conv.label_map_to_image(label_map, Header())
    label_map[:] = 0  # the tracker reusing its buffer must not change a message already built
    np.testing.assert_array_equal(inputs.image_to_numpy(msg), np.arange(12).reshape(3, 4))
    rgb = np.ones((2, 3, 3), np.uint8)
    msg = conv.numpy_to_image(rgb, "rgb8")
    assert not np.shares_memory(np.frombuffer(msg.data, np.uint8), rgb)


def test_tight_input_is_read_without_a_copy_and_padded_input_becomes_contiguous():
    rgb = RNG.integers(0, 256, (4, 5, 3), dtype=np.uint8)
    msg = _wire_round_trip(raw_image(rgb, "rgb8"))  # as a subscription delivers it
    out = inputs.image_to_rgb8(msg)
    assert np.shares_memory(out, np.frombuffer(msg.data, np.uint8))
    np.testing.assert_array_equal(out, rgb)
    padded = inputs.image_to_rgb8(_wire_round_trip(raw_image(rgb, "rgb8", pad=3)))
    assert padded.flags.c_contiguous
    np.testing.assert_array_equal(padded, rgb)
    label_map = RNG.integers(0, 65535, (3, 4), dtype=np.uint16)
    labels_msg = _wire_round_trip(raw_image(label_map, "16UC1"))
    labels = inputs.image_to_numpy(labels_msg)
    assert np.shares_memory(labels, np.frombuffer(labels_msg.data, np.uint8))
    np.testing.assert_array_equal(labels, label_map)


def _det(cx, cy, sx, sy, det_id="", cls=None, score=None):
    d = Detection2D(id=det_id)
    d.bbox.center.position.x, d.bbox.center.position.y = float(cx), float(cy)
    d.bbox.center.theta = 0.7  # ignored
    d.bbox.size_x, d.bbox.size_y = float(sx), float(sy)
    if cls is not None:
        hyp = ObjectHypothesisWithPose()
        hyp.hypothesis.class_id, hyp.hypothesis.score = cls, float(score)
        d.results.append(hyp)
    return d


def test_detections_from_msg():
    msg = Detection2DArray(
        detections=[
            _det(20, 10, 8, 4, "3", "cup", 0.8),
            _det(5, 5, 2, 2),  # no results: class "", score 1
            _det(5, 5, 0, 3, "9", "flat", 0.9),  # empty box: skipped
            _det(float("nan"), 5, 2, 2, "8", "nan", 0.9),
            _det(50, 1.7e308, 20, 1.7e308, "7", "huge", 0.9),  # finite, but its corner overflows
            _det(5, 5, 2, 2, "6", "nan score", float("nan")),
            _det(30, 30, 4, 4, "5", "after", 0.7),  # the bad ones cost nothing else
        ]
    )
    dets, rejected = inputs.detections_from_msg(msg)
    assert [(d.box_xyxy, d.class_id, d.score, d.det_id) for d in dets] == [
        ((16.0, 8.0, 24.0, 12.0), "cup", pytest.approx(0.8), "3"),
        ((4.0, 4.0, 6.0, 6.0), "", 1.0, ""),
        ((28.0, 28.0, 32.0, 32.0), "after", pytest.approx(0.7), "5"),
    ]
    assert [r.split(":")[0] for r in rejected] == [
        "detection 2 (id '9')",
        "detection 3 (id '8')",
        "detection 4 (id '7')",
        "detection 5 (id '6')",
    ]


def test_tracks_and_label_info_messages():
    header = Header(frame_id="cam")
    header.stamp.sec = 12
    tracks = [Track(7, "cup", (10.0, 4.0, 30.0, 8.0), 0.75, 80), Track(2, "", (0.0, 0.0, 1.0, 1.0), 0.5, 1)]
    msg = conv.tracks_to_msg(tracks, header)
    assert msg.header == header
    first = msg.detections[0]
    assert first.id == "7" and first.header == header
    assert (first.bbox.center.position.x, first.bbox.center.position.y, first.bbox.size_x, first.bbox.size_y) == (
        20.0,
        6.0,
        20.0,
        4.0,
    )
    assert first.results[0].hypothesis.class_id == "cup"
    assert first.results[0].hypothesis.score == pytest.approx(0.75)
    assert msg.detections[1].results[0].hypothesis.class_id == "object"

    info = conv.label_info_msg({7: "cup", 2: ""}, header, 0.4)
    assert info.header == header and info.threshold == pytest.approx(0.4)
    assert [(c.class_id, c.class_name) for c in info.class_map] == [(2, "object"), (7, "cup")]


def test_debug_overlay_marks_tracks_only():
    rgb = np.full((20, 30, 3), 100, np.uint8)
    labels = np.zeros((20, 30), np.uint16)
    labels[5:10, 5:15] = 4
    out = outputs.debug_overlay(rgb, labels, [Track(4, "x", (5.0, 5.0, 15.0, 10.0), 0.9, 50)])
    assert out.shape == rgb.shape and out.dtype == np.uint8
    assert (out[7, 10] != rgb[7, 10]).any()  # inside the mask: tinted
    np.testing.assert_array_equal(out[18, 28], rgb[18, 28])  # far away: untouched
    with pytest.raises(ValueError, match="differs from image size"):
        outputs.debug_overlay(rgb, labels[:10], [])
