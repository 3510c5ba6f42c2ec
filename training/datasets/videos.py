"""A folder of the user's own (robot) videos, trained on with estimated flow.

This is the paper's "estimated flow" route for footage without ground truth: backward flow is
estimated with OpenCV DIS at the video's own resolution, then frames and flow are resized to the
model resolution (flow rescaled) and cached, and optional
first-frame boxes (JSON) condition the slots. There is no segmentation, so ``segmentations`` are
zeros and ``boxes`` / ``visible`` are empty (all zero / False).

Folder layout: ``root/*.mp4|avi|mov|mkv|webm`` and/or ``root/<name>/*.png|jpg|jpeg|bmp`` (frames
sorted by file name). A video's name is its file stem or its folder name. The boxes JSON maps a
name (or file name) to boxes in pixels of the original video: ``{"name": [[x0, y0, x1, y1], ...]}``.
Boxes describe the video's first frame, so they condition only windows that start at frame 0;
other windows come unconditioned (``conditioned`` 0, ``cond_boxes`` -1).
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch

from training.datasets.common import TARGET_KINDS, BackwardFlow, ClipDataset, build_item, check_choice, make_target

VIDEO_EXTENSIONS = (".mp4", ".avi", ".mov", ".mkv", ".webm")
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp")
# Bump when cached frames / flow would come out differently, to invalidate caches.
CACHE_VERSION = 2


@dataclass
class _Source:
    name: str
    path: Path
    frames: list[Path] | None  # None: a video file


@dataclass
class _Clip:
    frames: np.ndarray  # uint8 [T,h,w,3] at the model resolution
    original_size: tuple[int, int]  # (height, width) of the source, for the boxes JSON
    flow: np.ndarray | None = None  # float [T,h,w,2] backward flow, filled on demand
    boxes: list | None = None  # per frame: normalised yxyx boxes seen on it (bags with detections)


def _discover(root: Path) -> list[_Source]:
    if not root.is_dir():
        raise FileNotFoundError(f"video folder {root} does not exist or is not a directory")
    sources = []
    for entry in sorted(root.iterdir()):
        if entry.name.startswith("."):
            continue
        if entry.is_file() and entry.suffix.lower() in VIDEO_EXTENSIONS:
            sources.append(_Source(entry.stem, entry, None))
        elif entry.is_dir():
            frames = sorted(p for p in entry.iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS)
            if frames:
                sources.append(_Source(entry.name, entry, frames))
    if not sources:
        raise FileNotFoundError(
            f"no videos ({', '.join(VIDEO_EXTENSIONS)}) or folders of frames ({', '.join(IMAGE_EXTENSIONS)}) in {root}"
        )
    names = [s.name for s in sources]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise ValueError(f"several videos in {root} share the names {duplicates}; rename them")
    return sources


def _read_source(
    source: _Source, resolution: tuple[int, int], stride: int, max_frames: int | None, with_flow: bool
) -> _Clip:
    """Decode, subsample and resize a video's frames (RGB uint8), and estimate its flow on the way."""
    h, w = resolution
    frames, flows, original = [], [], None
    estimator = BackwardFlow((h, w)) if with_flow else None

    def add(bgr: np.ndarray) -> None:
        nonlocal original
        if original is None:
            original = bgr.shape[:2]
        rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
        if estimator is not None:
            flows.append(estimator(rgb))
        interp = cv2.INTER_AREA if (h <= bgr.shape[0] and w <= bgr.shape[1]) else cv2.INTER_LINEAR
        frames.append(cv2.resize(rgb, (w, h), interpolation=interp))

    def full() -> bool:
        return max_frames is not None and len(frames) >= max_frames

    if source.frames is not None:
        for path in source.frames[::stride]:
            image = cv2.imread(str(path), cv2.IMREAD_COLOR)
            if image is None:
                raise ValueError(f"cannot read image {path}")
            add(image)
            if full():
                break
    else:
        cap = cv2.VideoCapture(str(source.path))
        try:
            if not cap.isOpened():
                raise ValueError(f"cannot open video {source.path} (unsupported codec or corrupt file)")
            declared = int(cap.get(cv2.CAP_PROP_FRAME_COUNT))
            index = 0
            while not full():
                ok, image = cap.read()
                if not ok:
                    break
                if index % stride == 0:
                    add(image)
                index += 1
        finally:
            cap.release()
        if not frames:
            raise ValueError(f"could not decode any frame from video {source.path}")
        if not full() and declared > 0 and index < declared:
            # A short read: a truncated or partly corrupt file. Refused when most of it is missing,
            # used (with a warning) when only the tail is.
            if index < declared / 2:
                raise ValueError(
                    f"video {source.path}: decoded {index} of the {declared} frames its container "
                    "declares (truncated or corrupt); refusing it"
                )
            warnings.warn(
                f"video {source.path}: decoded {index} of the {declared} frames its container declares "
                "(truncated or corrupt?); using those",
                stacklevel=2,
            )
    return _Clip(np.stack(frames), (int(original[0]), int(original[1])), np.stack(flows) if flows else None)


def _fingerprint(source: _Source) -> str:
    """Identity of a source's content on disk: path, byte sizes and modification times."""
    files = source.frames if source.frames is not None else [source.path]
    stats = [(p.name, p.stat().st_size, p.stat().st_mtime_ns) for p in files]
    return json.dumps([str(source.path.resolve()), stats])


def _atomic_save(path: Path, array: np.ndarray) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".npy.tmp")
    with os.fdopen(fd, "wb") as f:
        np.save(f, array)
    os.replace(tmp, path)


def _load_boxes_json(path: str | os.PathLike, sources: list[_Source], max_instances: int) -> dict[str, np.ndarray]:
    """Boxes per source name, validated, still in original pixels xyxy."""
    path = Path(path)
    try:
        raw = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise ValueError(f"cannot read boxes JSON {path}: {exc}") from exc
    if not isinstance(raw, dict):
        raise ValueError(f"boxes JSON {path} must map video names to lists of [x0, y0, x1, y1]")
    by_key = {}
    for s in sources:
        by_key[s.name] = s.name
        by_key[s.path.name] = s.name
    unknown = sorted(k for k in raw if k not in by_key)
    if unknown:
        raise ValueError(
            f"boxes JSON {path} names videos not in the folder: {unknown}; known: {sorted(s.name for s in sources)}"
        )
    boxes = {}
    for key, value in raw.items():
        arr = np.asarray(value, np.float64)
        if arr.size == 0:
            arr = arr.reshape(0, 4)
        if arr.ndim != 2 or arr.shape[1] != 4:
            raise ValueError(f"boxes JSON {path}: {key!r} must be a list of [x0, y0, x1, y1], got {value!r}")
        if np.any(arr[:, 2] <= arr[:, 0]) or np.any(arr[:, 3] <= arr[:, 1]):
            raise ValueError(f"boxes JSON {path}: {key!r} has a box with x1 <= x0 or y1 <= y0")
        if len(arr) > max_instances:
            raise ValueError(f"boxes JSON {path}: {key!r} has {len(arr)} boxes > max_instances={max_instances}")
        boxes[by_key[key]] = arr
    return boxes


class VideoFolderDataset(ClipDataset):
    """Items per docs/ARCHITECTURE.md from a folder of videos, with DIS-estimated flow.

    Args:
        root: the folder (see the module docstring for its layout).
        resolution: (height, width) of the model input.
        window: frames per item (random start per epoch) or None for the full video.
        max_instances: N of the item dict.
        boxes_json: optional first-frame boxes per video, in original pixels xyxy.
        cache_dir: keeps resized frames and flow as .npy (flow float16); None = in memory only,
            per process (call ``prepare()`` before forking DataLoader workers).
        target: "flow" (flow-RGB of the estimated backward flow) or "rgb".
        frame_stride: keep every n-th frame (robot cameras often run faster than MOVi's 12 fps).
        max_frames: keep at most this many frames (after the stride) of each video.
        samples_per_video: items per video per epoch (several windows of a long video).
    """

    def __init__(
        self,
        root: str | os.PathLike,
        resolution: tuple[int, int] = (64, 64),
        window: int | None = 6,
        max_instances: int = 6,
        boxes_json: str | os.PathLike | None = None,
        cache_dir: str | os.PathLike | None = None,
        target: str = "flow",
        frame_stride: int = 1,
        max_frames: int | None = None,
        samples_per_video: int = 1,
        seed: int = 0,
    ) -> None:
        h, w = (int(v) for v in resolution)
        if h < 8 or w < 8:
            raise ValueError(f"resolution must be (height, width) >= 8, got {resolution}")
        check_choice("target", target, TARGET_KINDS)
        if frame_stride < 1:
            raise ValueError(f"frame_stride must be >= 1, got {frame_stride}")
        if max_frames is not None and max_frames < 1:
            raise ValueError(f"max_frames must be >= 1 or None, got {max_frames}")
        if samples_per_video < 1:
            raise ValueError(f"samples_per_video must be >= 1, got {samples_per_video}")
        super().__init__(root, (h, w), max_instances, window, seed)
        self.sources = self._discover()
        self.target = target
        self.frame_stride = int(frame_stride)
        self.max_frames = max_frames
        self.samples_per_video = int(samples_per_video)
        self.boxes = {} if boxes_json is None else _load_boxes_json(boxes_json, self.sources, self.max_instances)
        self.cache_dir = Path(cache_dir) if cache_dir is not None else None
        if self.cache_dir is not None:
            self.cache_dir.mkdir(parents=True, exist_ok=True)
        self._memory: dict[int, _Clip] = {}

    def _discover(self) -> list[_Source]:
        return _discover(self.root)

    def _read(self, source: _Source, with_flow: bool) -> _Clip:
        return _read_source(source, self.resolution, self.frame_stride, self.max_frames, with_flow)

    @property
    def names(self) -> list[str]:
        return [s.name for s in self.sources]

    def __len__(self) -> int:
        return len(self.sources) * self.samples_per_video

    def prepare(self) -> None:
        """Decode every video and estimate its flow now (fills the caches)."""
        for i in range(len(self.sources)):
            self._clip(i)

    def _cache_stem(self, source: _Source) -> str:
        key = json.dumps([CACHE_VERSION, _fingerprint(source), self.resolution, self.frame_stride, self.max_frames])
        return f"{source.name}_{hashlib.sha1(key.encode()).hexdigest()[:16]}"

    def _clip(self, video_index: int) -> _Clip:
        """Frames (and flow if the target needs it) of one video, from a cache when possible."""
        need_flow = self.target == "flow"
        clip = self._memory.get(video_index)
        if clip is not None and (clip.flow is not None or not need_flow):
            return clip
        source = self.sources[video_index]
        if self.cache_dir is None:
            clip = self._read(source, need_flow)
            self._memory[video_index] = clip
            return clip

        stem = self.cache_dir / self._cache_stem(source)
        frames_path, flow_path, meta_path = (
            stem.with_name(stem.name + suffix) for suffix in (".frames.npy", ".flow.npy", ".json")
        )
        cached = frames_path.exists() and meta_path.exists() and (flow_path.exists() or not need_flow)
        if cached:
            meta = json.loads(meta_path.read_text())
            clip = _Clip(
                np.load(frames_path, mmap_mode="r"),
                tuple(meta["original_size"]),
                np.load(flow_path, mmap_mode="r") if need_flow else None,
                meta.get("boxes"),
            )
        else:
            clip = self._read(source, need_flow)
            _atomic_save(frames_path, clip.frames)
            if clip.flow is not None:
                _atomic_save(flow_path, clip.flow.astype(np.float16))
            meta_path.write_text(
                json.dumps({"source": str(source.path), "original_size": clip.original_size, "boxes": clip.boxes})
            )
        self._memory[video_index] = clip
        return clip

    def _cond_boxes(self, video_index: int, clip: _Clip, start: int) -> np.ndarray | None:
        """Normalised yxyx first-frame boxes of a video, all -1 for windows not starting at 0."""
        xyxy = self.boxes.get(self.sources[video_index].name)
        if xyxy is None:
            return None
        oh, ow = clip.original_size
        yxyx = np.stack([xyxy[:, 1] / oh, xyxy[:, 0] / ow, xyxy[:, 3] / oh, xyxy[:, 2] / ow], -1)
        yxyx = np.clip(yxyx, 0.0, 1.0).astype(np.float32)
        return yxyx if start == 0 else np.full_like(yxyx, -1.0)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        if not 0 <= index < len(self):
            raise IndexError(f"index {index} out of range for {len(self)} items")
        video_index = index // self.samples_per_video
        clip = self._clip(video_index)
        num_frames = clip.frames.shape[0]
        sl = self.window_of(index, num_frames)
        frames = np.asarray(clip.frames[sl])
        flow = None if clip.flow is None else np.asarray(clip.flow[sl], np.float32)
        return build_item(
            video=frames,
            target=make_target(self.target, frames, flow),
            max_instances=self.max_instances,
            cond_boxes=self._cond_boxes(video_index, clip, sl.start),
            pad_frames_to=self.window,
        )
