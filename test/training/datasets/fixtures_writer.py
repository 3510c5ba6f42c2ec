"""Writers of tiny MOVi / Sketchy fixtures in the exact on-disk formats (TFRecord + tf.train.Example).

Written from the format description (TFDS key names, PNG/JPEG encodings, uint16 flow codes, ragged
box tables), not from the readers, so a round trip checks the readers against the format.
Tests load this file by path (importmode=importlib keeps test folders off sys.path).
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from training.datasets.example_proto import encode_example
from training.datasets.tfrecord import write_tfrecord


@dataclass
class MoviFixtureVideo:
    """Ground truth of one written MOVi video."""

    name: str
    video: np.ndarray  # uint8 [T,H,W,3]
    segmentations: np.ndarray  # uint8 [T,H,W]
    forward_flow: np.ndarray  # float32 [T,H,W,2] as stored (after quantisation)
    backward_flow: np.ndarray
    forward_range: tuple[float, float]
    backward_range: tuple[float, float]
    boxes: np.ndarray  # float32 [T,n,4] (0 where invisible)
    visible: np.ndarray  # bool [T,n]


def _png(image: np.ndarray) -> bytes:
    if image.ndim == 3:
        image = cv2.cvtColor(image, cv2.COLOR_RGB2BGR)
    ok, data = cv2.imencode(".png", image)
    assert ok
    return data.tobytes()


def _quantise(flow: np.ndarray, low: float, high: float) -> tuple[np.ndarray, np.ndarray]:
    codes = np.round((flow - low) / (high - low) * 65535).astype(np.int64)
    return codes, (codes / 65535.0 * (high - low) + low).astype(np.float32)


def make_movi_video(
    seed: int,
    num_frames: int = 4,
    height: int = 16,
    width: int = 20,
    num_instances: int = 3,
    constant_flow: tuple[float, float] | None = None,
) -> MoviFixtureVideo:
    """Random frames and rectangles; instance 1 is invisible in frame 0, so it is never conditioned."""
    rng = np.random.default_rng(seed)
    video = rng.integers(0, 256, (num_frames, height, width, 3), dtype=np.uint8)
    seg = np.zeros((num_frames, height, width), np.uint8)
    boxes = np.zeros((num_frames, num_instances, 4), np.float32)
    visible = np.zeros((num_frames, num_instances), bool)
    for t in range(num_frames):
        for i in range(num_instances):
            if i == 1 and t == 0:
                continue
            r0, c0 = int(rng.integers(0, height - 4)), int(rng.integers(0, width - 4))
            r1, c1 = r0 + int(rng.integers(2, 5)), c0 + int(rng.integers(2, 5))
            seg[t, r0:r1, c0:c1] = i + 1
    for t in range(num_frames):  # boxes of what remains visible after overlaps, MOVi's convention
        for i in range(num_instances):
            rows, cols = np.nonzero(seg[t] == i + 1)
            if rows.size:
                visible[t, i] = True
                boxes[t, i] = (
                    rows.min() / height,
                    cols.min() / width,
                    (rows.max() + 1) / height,
                    (cols.max() + 1) / width,
                )
    if constant_flow is None:
        fwd = rng.normal(0, 3, (num_frames, height, width, 2)).astype(np.float32)
        bwd = rng.normal(0, 2, (num_frames, height, width, 2)).astype(np.float32)
    else:
        fwd = np.zeros((num_frames, height, width, 2), np.float32)
        bwd = np.broadcast_to(np.asarray(constant_flow, np.float32), fwd.shape).copy()
    ranges = []
    for flow in (fwd, bwd):
        ranges.append((float(flow.min()) - 1.0, float(flow.max()) + 1.0))
    return MoviFixtureVideo(
        f"video_{seed}",
        video,
        seg,
        _quantise(fwd, *ranges[0])[1],
        _quantise(bwd, *ranges[1])[1],
        ranges[0],
        ranges[1],
        boxes,
        visible,
    )


def movi_features(v: MoviFixtureVideo) -> dict:
    """The flattened TFDS features of one video, as ``tf.train.Example`` values."""
    t, h, w, _ = v.video.shape
    n = v.boxes.shape[1]
    box_rows = [v.boxes[v.visible[:, i], i] for i in range(n)]
    frame_rows = [np.flatnonzero(v.visible[:, i]) for i in range(n)]
    return {
        "metadata/video_name": [v.name.encode()],
        "metadata/num_frames": [t],
        "metadata/height": [h],
        "metadata/width": [w],
        "metadata/num_instances": [n],
        "metadata/forward_flow_range": np.asarray(v.forward_range, np.float32),
        "metadata/backward_flow_range": np.asarray(v.backward_range, np.float32),
        "video": [_png(f) for f in v.video],
        "segmentations": [_png(f) for f in v.segmentations],
        "forward_flow": _quantise(v.forward_flow, *v.forward_range)[0],
        "backward_flow": _quantise(v.backward_flow, *v.backward_range)[0],
        "instances/bboxes/ragged_flat_values": np.concatenate(box_rows).reshape(-1).astype(np.float32),
        "instances/bboxes/ragged_row_lengths_0": np.asarray([len(r) for r in box_rows], np.int64),
        "instances/bbox_frames/ragged_flat_values": np.concatenate(frame_rows).astype(np.int64),
        "instances/bbox_frames/ragged_row_lengths_0": np.asarray([len(r) for r in frame_rows], np.int64),
        "instances/visibility": v.visible.T.astype(np.int64),  # present in real files; unused by the reader
    }


def write_movi_dir(root: Path, shards: dict[str, list[list[MoviFixtureVideo]]]) -> Path:
    """``{split: [videos of shard 0, videos of shard 1, ...]}`` -> ``root/movi_a-<split>.tfrecord-i-of-n``."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "dataset_info.json").write_text("{}")
    for split, shard_videos in shards.items():
        for i, videos in enumerate(shard_videos):
            path = root / f"movi_a-{split}.tfrecord-{i:05d}-of-{len(shard_videos):05d}"
            write_tfrecord(path, [encode_example(movi_features(v)) for v in videos])
    return root


# ------------------------------------------------------------------------------------------------
# Sketchy
# ------------------------------------------------------------------------------------------------
SKETCHY_SCHEMA = """
CREATE TABLE Episodes (EpisodeId VARCHAR NOT NULL PRIMARY KEY, TaskId VARCHAR, DataPath VARCHAR,
                       Timestamp INTEGER, EpisodeType VARCHAR);
CREATE TABLE Tags (Name VARCHAR NOT NULL PRIMARY KEY);
CREATE TABLE EpisodeTags (EpisodeId VARCHAR NOT NULL REFERENCES Episodes (EpisodeId),
                          Tag VARCHAR NOT NULL REFERENCES Tags (Name), PRIMARY KEY (EpisodeId, Tag));
CREATE TABLE RewardSequences (EpisodeId VARCHAR NOT NULL REFERENCES Episodes (EpisodeId),
                              RewardSequenceId VARCHAR NOT NULL, RewardTaskId VARCHAR, Type VARCHAR,
                              User VARCHAR, "Values" BLOB, PRIMARY KEY (EpisodeId, RewardSequenceId));
CREATE TABLE ArchiveFiles (EpisodeId VARCHAR NOT NULL PRIMARY KEY REFERENCES Episodes (EpisodeId),
                           ArchiveFile VARCHAR);
"""


@dataclass
class SketchyFixtureEpisode:
    episode_id: str
    data_path: str
    episode_type: str
    tags: list[str]
    archive: str
    jpegs: list[bytes]  # per timestep, camera pixels/basket_front_left


def jpeg(image: np.ndarray) -> bytes:
    ok, data = cv2.imencode(".jpg", cv2.cvtColor(image, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 95])
    assert ok
    return data.tobytes()


def sketchy_timestep(image_jpeg: bytes, step: int) -> bytes:
    """One timestep Example with the real file's main keys (other cameras as tiny JPEGs)."""
    small = jpeg(np.full((6, 8, 3), step * 10, np.uint8))
    return encode_example(
        {
            "actions": np.full(7, step, np.float32),
            "gripper/grasp": [step % 2],
            "pixels/basket_front_left": [image_jpeg],
            "pixels/basket_back_left": [small],
            "pixels/usbcam0": [small],
            "pixels/royale_camera_driver_depth": np.zeros(12, np.float32),
            "sawyer/joints/angle": np.arange(7, dtype=np.float32),
        }
    )


def write_sketchy_metadata(path: Path, episodes: list[SketchyFixtureEpisode]) -> None:
    db = sqlite3.connect(path)
    db.executescript(SKETCHY_SCHEMA)
    tags = sorted({t for e in episodes for t in e.tags})
    db.executemany("INSERT INTO Tags VALUES (?)", [(t,) for t in tags])
    for k, e in enumerate(episodes):
        db.execute(
            "INSERT INTO Episodes VALUES (?, ?, ?, ?, ?)",
            (e.episode_id, "lift_green", e.data_path, 1_500_000_000 + k, e.episode_type),
        )
        db.executemany("INSERT INTO EpisodeTags VALUES (?, ?)", [(e.episode_id, t) for t in e.tags])
        db.execute("INSERT INTO ArchiveFiles VALUES (?, ?)", (e.episode_id, e.archive))
        db.execute(
            "INSERT INTO RewardSequences VALUES (?, ?, ?, ?, ?, ?)",
            (e.episode_id, "0", "lift_green", "REWARD_SKETCH", "user", np.zeros(3, np.float32).tobytes()),
        )
    db.commit()
    db.close()


def make_sketchy_episode(
    seed: int, num_steps: int, episode_type: str, tags: list[str], height: int = 12, width: int = 16
) -> tuple[SketchyFixtureEpisode, np.ndarray]:
    """An episode with smooth random frames (JPEG-friendly); returns it and the original frames."""
    rng = np.random.default_rng(seed)
    base = cv2.resize(rng.integers(0, 256, (3, 4, 3), dtype=np.uint8), (width, height), interpolation=cv2.INTER_LINEAR)
    frames = np.stack([np.clip(base.astype(int) + 8 * t, 0, 255).astype(np.uint8) for t in range(num_steps)])
    episode_id = f"{10**19 + seed}"
    episode = SketchyFixtureEpisode(
        episode_id,
        f"{episode_id}_0000-episode-{seed}",
        episode_type,
        tags,
        f"{tags[0]}-00000-of-00001.tar.bz2",
        [jpeg(f) for f in frames],
    )
    return episode, frames


def write_sketchy_episode(path: Path, episode: SketchyFixtureEpisode) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    write_tfrecord(path, [sketchy_timestep(j, t) for t, j in enumerate(episode.jpegs)])
