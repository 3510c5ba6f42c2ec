"""The demo's crossing case: in scene 3 a star passes in front of a circle and the two slots trade objects;
the Tracker's appearance rule (``swap_margin``) gives each id back to its object once they part.

Played through the Tracker in-process (what the node runs), the packaged v6 model (whose slots trade objects
there), the demo camera's scene.
"""

import numpy as np
import pytest

from savi_core.model.checkpoint import load_checkpoint
from savi_core.tracking.tracker import Detection, Tracker
from savi_core.tracking.tracker_config import TrackerConfig
from savi_ros.demo.camera_node import DEFAULT_SEED, CameraConfig
from savi_ros.model_store import resolve_checkpoint


def best_object(scene, labels: np.ndarray, t: int, track_id: int) -> tuple[int, float]:
    """(object index, IoU) of the object the track's pixels overlap best on frame ``t``."""
    mask = labels == track_id
    ious = [
        (mask & (scene.segmentations[t] == i + 1)).sum() / max((mask | (scene.segmentations[t] == i + 1)).sum(), 1)
        for i in range(scene.num_objects)
    ]
    return int(np.argmax(ious)), float(max(ious))


def play(scene, swap_margin: float) -> list[np.ndarray]:
    model, _ = load_checkpoint(resolve_checkpoint("v6"))
    tracker = Tracker(model, TrackerConfig(swap_margin=swap_margin), device="cpu")
    h, w = scene.video.shape[1:3]
    boxes = scene.boxes[0] * np.array([h, w, h, w])  # yxyx pixels
    first = [Detection((x0, y0, x1, y1), class_id=name) for (y0, x0, y1, x1), name in zip(boxes, scene.classes)]
    return [tracker.step(frame, first if t == 0 else None).label_map for t, frame in enumerate(scene.video)]


@pytest.fixture(scope="module")
def crossing():
    scene = CameraConfig(world="2d").make_scene(DEFAULT_SEED + 3)
    assert scene.classes[:2] == ["circle", "star"]
    return scene


def test_slots_trade_objects_without_the_rule(crossing):
    labels = play(crossing, swap_margin=0.0)
    assert best_object(crossing, labels[-1], len(labels) - 1, 1)[0] == 1  # the circle's id on the star


def test_ids_come_back_to_their_objects_after_the_crossing(crossing):
    labels = play(crossing, swap_margin=TrackerConfig.swap_margin)
    for t in range(len(labels) - 4, len(labels)):
        for track_id in (1, 2, 3):
            index, iou = best_object(crossing, labels[t], t, track_id)
            assert index == track_id - 1 and iou > 0.5, f"frame {t}: track {track_id} on object {index} (IoU {iou:.2f})"
