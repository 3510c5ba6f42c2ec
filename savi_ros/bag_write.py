"""Writing bags as a robot records them (camera frames and a detector's boxes), and one of a synthetic
scene to try the bag workflow on."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

import cv2
import numpy as np
from rosbags.rosbag2 import Writer

from savi_ros import outputs
from savi_ros.bag_types import STORAGES, RosbagsTypes, typestore


def image_message(
    store, rgb: np.ndarray, nanoseconds: int, frame_id: str = "camera", compressed: Optional[str] = None
) -> tuple[str, Any]:
    """(type name, message) of an RGB frame: raw rgb8, or jpeg/png when ``compressed`` names the format."""
    types = RosbagsTypes(store)
    header = _header(types, nanoseconds, frame_id)
    if compressed is None:
        return "sensor_msgs/msg/Image", outputs.image_msg(types, np.ascontiguousarray(rgb), "rgb8", header)
    ok, data = cv2.imencode(f".{compressed}", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    if not ok:
        raise ValueError(f"cannot encode a frame as {compressed}")
    msg = types.make(
        "sensor_msgs/msg/CompressedImage", header=header, format=compressed, data=np.asarray(data, np.uint8).ravel()
    )
    return "sensor_msgs/msg/CompressedImage", msg


def detections_message(
    store,
    boxes_xyxy: list[tuple[float, float, float, float]],
    nanoseconds: int,
    class_id: str = "object",
    frame_id: str = "camera",
) -> Any:
    """A Detection2DArray of pixel boxes (ids "1", "2", ... in order), as a detector would publish."""
    types = RosbagsTypes(store)
    header = _header(types, nanoseconds, frame_id)
    msg = types.Detection2DArray(header=header)
    for index, box in enumerate(boxes_xyxy, 1):
        msg.detections.append(outputs.detection_msg(types, box, str(index), class_id, 0.9, header))
    return msg


def _header(types: RosbagsTypes, nanoseconds: int, frame_id: str) -> Any:
    stamp = types.store.types["builtin_interfaces/msg/Time"](
        sec=nanoseconds // 1_000_000_000, nanosec=nanoseconds % 1_000_000_000
    )
    return types.store.types["std_msgs/msg/Header"](stamp=stamp, frame_id=frame_id)


def write_bag(
    path: Path,
    frames: np.ndarray,
    boxes: dict[int, list],
    image_topic: str = "/camera/image",
    detections_topic: str = "/detections",
    fps: float = 10.0,
    storage: str = "mcap",
    compressed: Optional[str] = None,
    start_ns: int = 1_000_000_000,
    detection_delay_s: float = 0.0,
) -> None:
    """A bag as a robot records it: ``frames`` (uint8 RGB [T,H,W,3]) on ``image_topic`` at ``fps``
    (topic ``<image_topic>/compressed`` when ``compressed``), and for each frame index in ``boxes``
    a Detection2DArray stamped like that frame, recorded ``detection_delay_s`` after it."""
    store = typestore()
    path = Path(path)
    writer = Writer(path, version=9, storage_plugin=STORAGES[storage])
    writer.open()
    try:
        image_type = "sensor_msgs/msg/CompressedImage" if compressed else "sensor_msgs/msg/Image"
        image_conn = writer.add_connection(
            f"{image_topic}/compressed" if compressed else image_topic, image_type, typestore=store
        )
        det_conn = writer.add_connection(detections_topic, "vision_msgs/msg/Detection2DArray", typestore=store)
        records = []
        for t, rgb in enumerate(frames):
            stamp = start_ns + int(round(t * 1e9 / fps))
            typename, msg = image_message(store, rgb, stamp, compressed=compressed)
            records.append((stamp, 0, image_conn, store.serialize_cdr(msg, typename)))
            if t in boxes:
                det = detections_message(store, boxes[t], stamp)
                records.append(
                    (
                        stamp + int(detection_delay_s * 1e9),
                        1,
                        det_conn,
                        store.serialize_cdr(det, "vision_msgs/msg/Detection2DArray"),
                    )
                )
        for time_ns, _, conn, data in sorted(records, key=lambda r: r[:2]):
            writer.write(conn, time_ns, data)
    finally:
        writer.close()


def synthetic_bag(
    path: Path,
    world: str = "2d",
    seed: int = 0,
    frames: int = 24,
    size: tuple[int, int] = (320, 240),
    fps: float = 10.0,
    detect_every: int = 0,
    **kwargs: Any,
) -> None:
    """A bag of one synthetic scene (the demo's worlds) with first-frame detections (and every
    ``detect_every`` frames if > 0): something to try the bag workflow on without a robot."""
    from savi_scenes import SceneConfig, generate_scene
    from savi_scenes.physics3d import PhysicsSceneConfig, generate_physics_scene

    width, height = size
    if world == "3d":
        scene = generate_physics_scene(seed, PhysicsSceneConfig(height=height, width=width, num_frames=frames))
    else:
        scene = generate_scene(seed, SceneConfig(height=height, width=width, num_frames=frames))
    boxes = {}
    for t in range(frames):
        if t == 0 or (detect_every > 0 and t % detect_every == 0):
            boxes[t] = [
                (float(b[1] * width), float(b[0] * height), float(b[3] * width), float(b[2] * height))
                for b, v in zip(scene.boxes[t], scene.visible[t])
                if v
            ]
    write_bag(path, scene.video, boxes, fps=fps, **kwargs)
