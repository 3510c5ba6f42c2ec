"""The Tracker on CUDA gives the CPU's answer (skipped where no GPU: CI has none; run on a GPU machine
with `scripts/gpu_check.sh`)."""

from pathlib import Path

import numpy as np
import pytest
import torch

from savi_core.model.checkpoint import load_checkpoint
from savi_core.tracking.tracker import Detection, Tracker
from savi_core.tracking.tracker_config import TrackerConfig
from savi_scenes import SceneConfig, generate_scene

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")

DEFAULT_MODEL = Path(__file__).resolve().parents[3] / "savi_ros" / "models" / "default"


def _label_maps(device: str, precision: str, mask_source: str) -> list[np.ndarray]:
    """The shipped model tracking a 240x320 scene from its first-frame boxes."""
    scene = generate_scene(5, SceneConfig(height=240, width=320))
    model, _ = load_checkpoint(DEFAULT_MODEL)
    tracker = Tracker(model, TrackerConfig(mask_source=mask_source, precision=precision), device=device)
    detections = [
        Detection((float(x0) * 320, float(y0) * 240, float(x1) * 320, float(y1) * 240))
        for (y0, x0, y1, x1), seen in zip(scene.boxes[0], scene.visible[0])
        if seen
    ]
    maps = [tracker.step(scene.video[0], detections).label_map]
    maps += [tracker.step(frame).label_map for frame in scene.video[1:]]
    return maps


@pytest.mark.parametrize("mask_source", ["attention", "decoder"])
@pytest.mark.parametrize("precision, agreement", [("fp32", 0.999), ("bf16", 0.98), ("fp16", 0.98)])
def test_cuda_label_maps_agree_with_cpu(mask_source, precision, agreement):
    cpu = _label_maps("cpu", "fp32", mask_source)
    cuda = _label_maps("cuda", precision, mask_source)
    assert len(np.unique(cpu[-1])) >= 3, "the scene should still show tracked objects at the end"
    same = np.mean([np.mean(a == b) for a, b in zip(cpu, cuda)])
    assert same >= agreement, f"{precision}/{mask_source}: {same:.4f} of the pixels agree with the CPU"
