"""The offline bag tracker (`python -m savi_ros.bag`) on real bags written with rosbags' own writer.

The central check: the same messages tracked offline and played over DDS to the real node process
give the same masks and track ids, pixel for pixel.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

rclpy = pytest.importorskip("rclpy")
pytest.importorskip("rosbags")

from diagnostic_msgs.msg import DiagnosticArray  # noqa: E402
from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy  # noqa: E402
from rclpy.serialization import deserialize_message  # noqa: E402
from rosbags.highlevel import AnyReader  # noqa: E402
from sensor_msgs.msg import CompressedImage, Image  # noqa: E402
from vision_msgs.msg import Detection2DArray  # noqa: E402

from savi_ros import bag, params  # noqa: E402
from savi_scenes import SceneConfig, generate_scene  # noqa: E402
from test.savi_ros.conftest import wait_for  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
RELIABLE = QoSProfile(reliability=ReliabilityPolicy.RELIABLE, history=HistoryPolicy.KEEP_LAST, depth=50)
TIMEOUT_S = 60.0
W, H = 96, 72


def scene_bag(path: Path, storage: str, compressed: str | None, frames: int = 10, seed: int = 3) -> None:
    """A synthetic scene with detections on frame 0 (bootstrap: its image waits for them) and frame 5,
    each recorded 50 ms after its image: once tracks are live images do not wait, so frame 5's
    detections come late and act on frame 6."""
    scene = generate_scene(seed, SceneConfig(height=H, width=W, num_frames=frames))
    boxes = {
        t: [
            (float(b[1] * W), float(b[0] * H), float(b[3] * W), float(b[2] * H))
            for b, v in zip(scene.boxes[t], scene.visible[t])
            if v
        ]
        for t in (0, 5)
        if t < frames
    }
    bag.write_bag(path, scene.video, boxes, storage=storage, compressed=compressed, detection_delay_s=0.05)


def read_outputs(path: Path) -> tuple[dict[int, np.ndarray], dict[int, list[str]], int]:
    """Masks and track ids per image stamp (ns) from an output bag, and its number of label_info messages."""
    masks, ids, infos = {}, {}, 0
    with AnyReader([path], default_typestore=bag.typestore()) as reader:
        for conn, _, raw in reader.messages():
            if conn.topic == "/savi/masks":
                msg = reader.deserialize(raw, conn.msgtype)
                key = msg.header.stamp.sec * 10**9 + msg.header.stamp.nanosec
                masks[key] = np.frombuffer(msg.data.tobytes(), "<u2").reshape(msg.height, msg.width)
            elif conn.topic == "/savi/tracks":
                msg = reader.deserialize(raw, conn.msgtype)
                key = msg.header.stamp.sec * 10**9 + msg.header.stamp.nanosec
                ids[key] = sorted(d.id for d in msg.detections)
            elif conn.topic == "/savi/label_info":
                infos += 1
    return masks, ids, infos


def node_params(**values) -> params.NodeParams:
    return params.from_assignments([f"{k}:={v}" for k, v in {"device": "cpu", **values}.items()])


@pytest.mark.parametrize("storage, compressed", [("sqlite3", None), ("mcap", "jpeg")])
def test_offline_tracking_equals_the_live_node_on_the_same_messages(
    tmp_path, storage, compressed, spinner, node_launcher
):
    src = tmp_path / "in"
    scene_bag(src, storage, compressed)
    out = tmp_path / "out"
    summary = bag.track_bag(src, out, "/camera/image", "/detections", node_params(), progress=False)
    assert out.is_dir() and (out / "overlay.mp4").stat().st_size > 0 and (out / "summary.json").exists()
    assert not list(tmp_path.glob(".*partial*"))
    offline_masks, offline_ids, infos = read_outputs(out)
    assert summary.processed == summary.images == 10
    assert summary.detections_with_their_image == 1 and summary.counters["late_detections"] == 1
    assert len(offline_masks) == 10 and infos >= 1
    assert all(offline_ids.values()) and offline_ids[min(offline_ids)] == [
        str(i) for i in range(1, len(offline_ids[min(offline_ids)]) + 1)
    ]

    # The input topics are copied unchanged.
    with AnyReader([src]) as a, AnyReader([out]) as b:
        original = [(c.topic, t, bytes(r)) for c, t, r in a.messages()]
        copied = [(c.topic, t, bytes(r)) for c, t, r in b.messages() if not c.topic.startswith("/savi/")]
    assert copied == original

    # The same messages, played over DDS to the real node, one stamp at a time.
    namespace = f"/bag_{storage}_{int(time.time() * 1000) % 10**8}"
    proc = node_launcher(
        tmp_path,
        namespace,
        {
            "device": "cpu",
            "checkpoint": "default",
            "image_qos": "reliable",
            "image_transport": "compressed" if compressed else "raw",
        },
    )
    try:
        node = spinner.node
        live_masks, live_ids = {}, {}
        late_acted = [0]  # the node's late_detections counter on /diagnostics

        def count_late(msg: DiagnosticArray) -> None:
            for status in msg.status:
                if status.name == f"{namespace}/savi_tracker: tracking":
                    late_acted[0] = int({kv.key: kv.value for kv in status.values}["late_detections"])

        def keep(store, convert):
            return lambda msg: store.__setitem__(msg.header.stamp.sec * 10**9 + msg.header.stamp.nanosec, convert(msg))

        subs = [
            node.create_subscription(DiagnosticArray, "/diagnostics", count_late, RELIABLE),
            node.create_subscription(
                Image,
                f"{namespace}/masks",
                keep(live_masks, lambda m: np.frombuffer(bytes(m.data), "<u2").reshape(m.height, m.width)),
                RELIABLE,
            ),
            node.create_subscription(
                Detection2DArray,
                f"{namespace}/tracks",
                keep(live_ids, lambda m: sorted(d.id for d in m.detections)),
                RELIABLE,
            ),
        ]
        image_type = CompressedImage if compressed else Image
        image_pub = node.create_publisher(
            image_type, f"{namespace}/image{'/compressed' if compressed else ''}", RELIABLE
        )
        det_pub = node.create_publisher(Detection2DArray, f"{namespace}/detections", RELIABLE)
        # Matched both ways (our inputs to the node, the node's outputs to us): an output published
        # before its subscription is matched is lost, and volatile QoS never replays it.
        assert wait_for(
            lambda: (
                image_pub.get_subscription_count() > 0
                and det_pub.get_subscription_count() > 0
                and all(sub.get_publisher_count() > 0 for sub in subs)
            ),
            120.0,
        ), proc.output()
        time.sleep(1.0)  # discovery is asymmetric: let the node's side of each match settle too
        with AnyReader([src]) as reader:
            records = [(c.msgtype, bytes(r)) for c, _, r in reader.messages()]
        pending = first = None
        late_sent = 0
        for msgtype, raw in records:
            if msgtype.endswith("Detection2DArray"):
                if pending != first:  # late detections: recorded after their image was processed
                    assert wait_for(lambda: pending in live_masks and pending in live_ids, TIMEOUT_S), proc.output()
                det_pub.publish(deserialize_message(raw, Detection2DArray))
                if pending != first:  # taken as late by the node before the next image, as in the recording
                    late_sent += 1
                    assert wait_for(lambda: late_acted[0] == late_sent, TIMEOUT_S), proc.output()
                continue
            if pending is not None:
                assert wait_for(lambda: pending in live_masks and pending in live_ids, TIMEOUT_S), proc.output()
            msg = deserialize_message(raw, image_type)
            pending = msg.header.stamp.sec * 10**9 + msg.header.stamp.nanosec
            first = pending if first is None else first
            image_pub.publish(msg)
        assert wait_for(lambda: pending in live_masks and pending in live_ids, TIMEOUT_S), proc.output()
        for sub in subs:
            node.destroy_subscription(sub)
        node.destroy_publisher(image_pub)
        node.destroy_publisher(det_pub)
    finally:
        proc.stop()
    assert sorted(live_masks) == sorted(offline_masks)
    for stamp in offline_masks:
        assert live_ids[stamp] == offline_ids[stamp], stamp
        np.testing.assert_array_equal(live_masks[stamp], offline_masks[stamp], err_msg=str(stamp))


def test_missing_topic_unmatched_detections_truncated_and_not_a_bag_are_one_clear_error(tmp_path):
    src = tmp_path / "in"
    scene_bag(src, "mcap", None, frames=4)
    with pytest.raises(bag.BagError, match=r"in: no topic '/camera/left' for images.*/camera/image"):
        bag.track_bag(src, tmp_path / "a", "/camera/left", "/detections", node_params(), progress=False)
    with pytest.raises(bag.BagError, match="carries sensor_msgs/msg/Image, not detections"):
        bag.track_bag(src, tmp_path / "b", "/camera/image", "/camera/image", node_params(), progress=False)

    # Detections stamped by another clock (1 s late): they act late, but never with their image.
    scene = generate_scene(0, SceneConfig(height=H, width=W, num_frames=4))
    shifted = tmp_path / "shifted"
    bag.write_bag(shifted, scene.video, {0: [(2.0, 2.0, 20.0, 20.0)]}, storage="mcap")
    with AnyReader([shifted], default_typestore=bag.typestore()) as reader:
        records = [(c, t, reader.deserialize(r, c.msgtype)) for c, t, r in reader.messages()]
    store = bag.typestore()
    moved = tmp_path / "moved"
    from rosbags.rosbag2 import StoragePlugin, Writer

    with Writer(moved, version=9, storage_plugin=StoragePlugin.MCAP) as writer:
        conns = {}
        for conn, t, msg in records:
            if conn.topic not in conns:
                conns[conn.topic] = writer.add_connection(conn.topic, conn.msgtype, typestore=store)
            if conn.topic == "/detections":
                msg.header.stamp.sec += 100
            writer.write(conns[conn.topic], t, store.serialize_cdr(msg, conn.msgtype))
    with pytest.raises(bag.BagError, match=r"moved: none of the 1 messages on '/detections' has the stamp"):
        bag.track_bag(moved, tmp_path / "c", "/camera/image", "/detections", node_params(), progress=False)

    # A truncated MCAP file and a file that is no bag at all.
    truncated = tmp_path / "truncated.mcap"
    data = next(src.glob("*.mcap")).read_bytes()
    truncated.write_bytes(data[: len(data) // 2])
    with pytest.raises(bag.BagError, match="truncated.mcap"):
        bag.track_bag(truncated, tmp_path / "d", "/camera/image", "/detections", node_params(), progress=False)
    junk = tmp_path / "junk.bag"
    junk.write_bytes(b"not a bag at all" * 100)
    with pytest.raises(bag.BagError, match="junk.bag: not a readable bag"):
        bag.track_bag(junk, tmp_path / "e", "/camera/image", "/detections", node_params(), progress=False)
    # Nothing half-written is left behind, under the final name or a temporary one.
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in", "junk.bag", "moved", "shifted", "truncated.mcap"]


def test_command_line_runs_without_rclpy_and_errors_are_one_line(tmp_path):
    """The offline path must not import rclpy (a plain machine): the command runs with rclpy blocked."""
    src = tmp_path / "in"
    scene_bag(src, "mcap", "png", frames=4)
    blocked = (
        "import runpy, sys; sys.modules['rclpy'] = None; sys.argv = ['savi_ros.bag'] + sys.argv[1:]; "
        "runpy.run_module('savi_ros.bag', run_name='__main__')"
    )
    ok = subprocess.run(
        [
            sys.executable,
            "-c",
            blocked,
            "track",
            str(src),
            str(tmp_path / "out"),
            "--image",
            "/camera/image",
            "--detections",
            "/detections",
            "--device",
            "cpu",
            "--no-progress",
            "-p",
            "min_mask_area:=0",
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert ok.returncode == 0, ok.stderr
    assert "4 of 4 images tracked" in ok.stdout and (tmp_path / "out" / "metadata.yaml").exists()
    bad = subprocess.run(
        [
            sys.executable,
            "-m",
            "savi_ros.bag",
            "track",
            str(src),
            str(tmp_path / "out2"),
            "--image",
            "/nope",
            "--no-progress",
            "-p",
            "score_threshold:=high",
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert bad.returncode == 1
    assert bad.stderr.strip().splitlines() == ["savi_ros.bag: error: score_threshold: expected float, got 'high'"]


def test_ros1_bag_images_are_tracked_too(tmp_path):
    """A ROS 1 bag (rosbags' rosbag1 writer, noetic types): its images are read, copied as ROS 2 messages
    into the MCAP output, and tracked (no detections in it: nothing starts, every frame is processed)."""
    from rosbags.rosbag1 import Writer
    from rosbags.typesys import Stores, get_typestore

    store = get_typestore(Stores.ROS1_NOETIC)
    image, header, stamp = (
        store.types[n] for n in ("sensor_msgs/msg/Image", "std_msgs/msg/Header", "builtin_interfaces/msg/Time")
    )
    scene = generate_scene(0, SceneConfig(height=H, width=W, num_frames=5))
    src = tmp_path / "ros1.bag"
    with Writer(src) as writer:
        conn = writer.add_connection("/camera/image", "sensor_msgs/msg/Image", typestore=store)
        for t, frame in enumerate(scene.video):
            msg = image(
                header=header(seq=t, stamp=stamp(sec=1 + t, nanosec=0), frame_id="cam"),
                height=H,
                width=W,
                encoding="rgb8",
                is_bigendian=0,
                step=3 * W,
                data=frame.reshape(-1),
            )
            writer.write(conn, (1 + t) * 10**9, store.serialize_ros1(msg, "sensor_msgs/msg/Image"))
    summary = bag.track_bag(src, tmp_path / "out", "/camera/image", None, node_params(), progress=False)
    assert summary.images == summary.processed == 5 and summary.tracks_started == []
    masks, ids, _ = read_outputs(tmp_path / "out")
    assert sorted(masks) == [(1 + t) * 10**9 for t in range(5)] and all(v == [] for v in ids.values())
    with AnyReader([tmp_path / "out"], default_typestore=bag.typestore()) as reader:
        copied = [reader.deserialize(raw, c.msgtype) for c, _, raw in reader.messages() if c.topic == "/camera/image"]
    assert [c.header.frame_id for c in copied] == ["cam"] * 5
    np.testing.assert_array_equal(copied[3].data.reshape(H, W, 3), scene.video[3])
