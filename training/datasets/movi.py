"""MOVi (Kubric, TFDS layout) read without TensorFlow.

A TFDS MOVi directory (e.g. ``movi_a/128x128/1.0.0/``) holds shards
``<name>-<split>.tfrecord-NNNNN-of-MMMMM``; each record is one ``tf.train.Example`` per video with
keys flattened by ``/``:

- ``video``: T PNG-encoded RGB frames; ``segmentations``: T 8-bit grey PNGs (0 = background,
  i+1 = instance i);
- ``forward_flow`` / ``backward_flow``: T*H*W*2 uint16 codes (C order, channels (d_row, d_col)),
  value = code / 65535 * (max - min) + min with ``metadata/<which>_flow_range``;
- ``instances/bboxes/ragged_flat_values`` (4 floats per box, normalised yxyx) with
  ``instances/bboxes/ragged_row_lengths_0`` (boxes per instance), and ``instances/bbox_frames/...``
  likewise (frame index of each box);
- ``metadata/{num_frames,height,width,num_instances}``.

The shard index (file, record offset) is built once by walking the record headers.
"""

from __future__ import annotations

import os
import re
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import cv2
import numpy as np
import torch

from training.datasets.common import (
    TARGET_KINDS,
    ClipDataset,
    build_item,
    check_choice,
    make_target,
    resize_flow,
    resize_segmentations,
    resize_video,
)
from training.datasets.example_proto import ExampleFeatures
from training.datasets.tfrecord import DatasetFormatError, read_record, scan_records

SPLITS = ("train", "validation")
FLOW_DIRECTIONS = ("backward", "forward")
_FLOW_MAX_CODE = 65535.0


@dataclass(frozen=True)
class MoviVideo:
    """One decoded MOVi video (all frames, native resolution)."""

    name: str
    video: np.ndarray  # uint8 [T,H,W,3] RGB
    segmentations: np.ndarray  # uint8/uint16 [T,H,W]
    flow: np.ndarray  # float32 [T,H,W,2] (d_row, d_col) pixels
    boxes: np.ndarray  # float32 [T,n,4] normalised yxyx, 0 where invisible
    visible: np.ndarray  # bool [T,n]


def find_shards(root: str | os.PathLike, split: str) -> list[Path]:
    """The TFRecord shards of ``split`` under ``root``, in shard order."""
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"MOVi directory not found: {root}")
    pattern = re.compile(rf".+-{split}\.tfrecord(-\d+-of-\d+)?$")
    shards = sorted(p for p in root.iterdir() if pattern.match(p.name) and p.is_file())
    if not shards:
        raise FileNotFoundError(f"no '*-{split}.tfrecord-NNNNN-of-MMMMM' shards in {root}")
    return shards


def _decode_png(data: bytes, flags: int, source: str, key: str, frame: int) -> np.ndarray:
    image = cv2.imdecode(np.frombuffer(data, np.uint8), flags)
    if image is None:
        raise DatasetFormatError(f"{source}: '{key}' frame {frame} is not a decodable image")
    return image


def _decode_frames(
    features: ExampleFeatures, key: str, frames: range, num_frames: int, height: int, width: int, color: bool
) -> np.ndarray:
    encoded = features.bytes(key)
    if len(encoded) != num_frames:
        raise DatasetFormatError(
            f"{features.source}: '{key}' has {len(encoded)} frames, metadata/num_frames is {num_frames}"
        )
    out = []
    for t in frames:
        image = _decode_png(encoded[t], cv2.IMREAD_COLOR if color else cv2.IMREAD_UNCHANGED, features.source, key, t)
        if color:
            image = cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
        elif image.ndim == 3 and image.shape[2] == 1:
            image = image[..., 0]
        expected = (height, width, 3) if color else (height, width)
        if image.shape != expected:
            raise DatasetFormatError(
                f"{features.source}: '{key}' frame {t} has shape {image.shape}, expected {expected}"
            )
        out.append(image)
    return np.stack(out)


def _ragged(features: ExampleFeatures, key: str, num_instances: int, inner: int, floats: bool) -> list[np.ndarray]:
    """Split a TFDS ragged feature into one array per instance (each ``[len, inner]``)."""
    lengths = features.ints(f"{key}/ragged_row_lengths_0", num_instances)
    flat_key = f"{key}/ragged_flat_values"
    values = features.floats(flat_key) if floats else features.ints(flat_key)
    if np.any(lengths < 0) or values.size != int(lengths.sum()) * inner:
        raise DatasetFormatError(
            f"{features.source}: '{flat_key}' has {values.size} values, but the row "
            f"lengths {lengths.tolist()} need {int(lengths.sum()) * inner}"
        )
    return np.split(values.reshape(-1, inner), np.cumsum(lengths)[:-1])


def decode_movi_example(f: ExampleFeatures, flow: str = "backward", frames: slice | None = None) -> MoviVideo:
    """Decode one parsed MOVi record (only the frames in ``frames``; all by default)."""
    if flow not in FLOW_DIRECTIONS:
        raise ValueError(f"flow must be one of {FLOW_DIRECTIONS}, got {flow!r}")
    source = f.source
    num_frames = f.int("metadata/num_frames")
    height, width = f.int("metadata/height"), f.int("metadata/width")
    num_instances = f.int("metadata/num_instances")
    name_values = f.bytes("metadata/video_name") if "metadata/video_name" in f else []
    name = name_values[0].decode("utf-8", "replace") if name_values else ""
    if min(num_frames, height, width) < 1 or num_instances < 0:
        raise DatasetFormatError(
            f"{source}: bad metadata (num_frames={num_frames}, height={height}, "
            f"width={width}, num_instances={num_instances})"
        )
    window = range(num_frames)[frames if frames is not None else slice(None)]
    if len(window) == 0 or window.step != 1:
        raise ValueError(f"frames {frames} select no contiguous frames of {num_frames}")

    video = _decode_frames(f, "video", window, num_frames, height, width, color=True)
    segmentations = _decode_frames(f, "segmentations", window, num_frames, height, width, color=False)
    if int(segmentations.max(initial=0)) > num_instances:
        raise DatasetFormatError(
            f"{source}: 'segmentations' holds id {int(segmentations.max())} but "
            f"metadata/num_instances is {num_instances}"
        )

    flow_key = f"{flow}_flow"
    low, high = f.floats(f"metadata/{flow_key}_range", 2)
    codes = f.ints(flow_key, num_frames * height * width * 2).reshape(num_frames, height, width, 2)
    codes = codes[window.start : window.stop]
    if codes.size and (codes.min() < 0 or codes.max() > _FLOW_MAX_CODE):
        raise DatasetFormatError(f"{source}: '{flow_key}' codes outside the uint16 range")
    flow_px = (codes.astype(np.float32) / _FLOW_MAX_CODE * (high - low) + low).astype(np.float32)

    boxes = np.zeros((len(window), num_instances, 4), np.float32)
    visible = np.zeros((len(window), num_instances), bool)
    per_box = _ragged(f, "instances/bboxes", num_instances, 4, floats=True)
    per_frame = _ragged(f, "instances/bbox_frames", num_instances, 1, floats=False)
    for i, (inst_boxes, inst_frames) in enumerate(zip(per_box, per_frame)):
        inst_frames = inst_frames[:, 0]
        if len(inst_frames) != len(inst_boxes):
            raise DatasetFormatError(
                f"{source}: instance {i} has {len(inst_boxes)} boxes but {len(inst_frames)} bbox_frames"
            )
        if inst_frames.size and (inst_frames.min() < 0 or inst_frames.max() >= num_frames):
            raise DatasetFormatError(f"{source}: instance {i} has bbox_frames outside 0..{num_frames - 1}")
        keep = (inst_frames >= window.start) & (inst_frames < window.stop)
        rows = inst_frames[keep] - window.start
        boxes[rows, i] = inst_boxes[keep]
        visible[rows, i] = True
    return MoviVideo(name, video, segmentations, flow_px, boxes, visible)


class MoviDataset(ClipDataset):
    """A MOVi split as training items (docs/ARCHITECTURE.md "training.datasets item").

    Args:
        root: TFDS version directory holding the shards (e.g. ``.../movi_a/128x128/1.0.0``).
        split: ``"train"`` or ``"validation"``.
        resolution: (H, W) to resize to; None keeps the stored resolution. Flow is rescaled with
            the image, segmentations use nearest neighbour.
        max_instances: N, the number of object slots.
        window: frames per item, sampled deterministically from (seed, index, epoch); None = full video.
        target: ``"flow"`` (flow rendered as RGB) or ``"rgb"``.
        flow: which stored flow feeds the flow target.
        excess_instances: what to do with a video holding more than ``max_instances`` objects:
            ``"error"`` (default, nothing is silently dropped) or ``"truncate"`` (keep the first
            ``max_instances``; pixels of the others become background; warns once).
    """

    def __init__(
        self,
        root: str | os.PathLike,
        split: str = "train",
        resolution: tuple[int, int] | None = None,
        max_instances: int = 10,
        window: int | None = 6,
        target: Literal["flow", "rgb"] = "flow",
        flow: Literal["backward", "forward"] = "backward",
        seed: int = 0,
        excess_instances: Literal["error", "truncate"] = "error",
    ) -> None:
        check_choice("target", target, TARGET_KINDS)
        check_choice("flow", flow, FLOW_DIRECTIONS)
        check_choice("excess_instances", excess_instances, ("error", "truncate"))
        super().__init__(root, resolution, max_instances, window, seed)
        self.split = split
        self.target = target
        self.flow = flow
        self.excess_instances = excess_instances
        self._warned_excess = False
        self.records: list[tuple[Path, int, int]] = []  # (shard, record index in shard, byte offset)
        for shard in find_shards(self.root, split):
            self.records.extend((shard, i, loc.offset) for i, loc in enumerate(scan_records(shard)))
        if not self.records:
            raise DatasetFormatError(f"the {split} shards in {self.root} hold no records")

    def __len__(self) -> int:
        return len(self.records)

    def source(self, index: int) -> str:
        shard, record, offset = self.records[index]
        return f"{shard}: record {record} at byte {offset}"

    def _features(self, index: int) -> ExampleFeatures:
        if not 0 <= index < len(self):
            raise IndexError(f"index {index} out of range for {len(self)} videos")
        shard, record, offset = self.records[index]
        return ExampleFeatures(read_record(shard, offset, record), self.source(index))

    def read(self, index: int, frames: slice | None = None) -> MoviVideo:
        """The decoded video ``index`` at the stored resolution (checked framing and content)."""
        return decode_movi_example(self._features(index), self.flow, frames)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        features = self._features(index)
        num_frames = features.int("metadata/num_frames")
        clip = decode_movi_example(features, self.flow, self.window_of(index, num_frames))
        segmentations, boxes, visible = self._limit_instances(clip, index)
        video, flow_px = clip.video, clip.flow
        if self.resolution is not None:
            video = resize_video(video, self.resolution)
            segmentations = resize_segmentations(segmentations, self.resolution)
            flow_px = resize_flow(flow_px, self.resolution)
        return build_item(
            video,
            make_target(self.target, video, flow_px),
            self.max_instances,
            segmentations=segmentations,
            boxes=boxes,
            visible=visible,
            pad_frames_to=self.window,
        )

    def _limit_instances(self, clip: MoviVideo, index: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        n = clip.boxes.shape[1]
        if n <= self.max_instances:
            return clip.segmentations, clip.boxes, clip.visible
        if self.excess_instances == "error":
            raise DatasetFormatError(
                f"{self.source(index)}: video has {n} instances but max_instances="
                f"{self.max_instances} (pass excess_instances='truncate' to drop the rest)"
            )
        if not self._warned_excess:
            warnings.warn(
                f"{self.source(index)}: video has {n} instances > max_instances={self.max_instances}; "
                "keeping the first ones, the others become background (warned once)",
                stacklevel=3,
            )
            self._warned_excess = True
        seg = np.where(clip.segmentations > self.max_instances, 0, clip.segmentations)
        return seg, clip.boxes[:, : self.max_instances], clip.visible[:, : self.max_instances]
