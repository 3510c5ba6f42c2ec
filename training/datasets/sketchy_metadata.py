"""Build a Sketchy ``metadata.sqlite`` for a folder of episode files (when the original is not at hand,
or for your own recordings in Sketchy's format).

``python -m training.datasets.sketchy_metadata ROOT [--tag TAG] [--type TYPE]`` finds every
extension-less file under ROOT that reads as a TFRecord of timesteps with a known camera image, and
writes ``ROOT/metadata.sqlite`` with the tables and columns the reader queries (``Episodes``,
``Tags``, ``EpisodeTags``, ``ArchiveFiles``; the reward tables are left out). An episode's id is its
file name, its ``DataPath`` the path relative to ROOT. A file that is not a readable episode is listed
and skipped, never half-indexed.
"""

from __future__ import annotations

import argparse
import sqlite3
import sys
from pathlib import Path

from training.datasets.example_proto import describe
from training.datasets.sketchy import CAMERAS
from training.datasets.tfrecord import DatasetFormatError, read_record, scan_records

SCHEMA = """
CREATE TABLE Episodes (EpisodeId VARCHAR NOT NULL PRIMARY KEY, TaskId VARCHAR, DataPath VARCHAR,
                       Timestamp INTEGER, EpisodeType VARCHAR);
CREATE TABLE Tags (Name VARCHAR NOT NULL PRIMARY KEY);
CREATE TABLE EpisodeTags (EpisodeId VARCHAR NOT NULL REFERENCES Episodes (EpisodeId),
                          Tag VARCHAR NOT NULL REFERENCES Tags (Name), PRIMARY KEY (EpisodeId, Tag));
CREATE TABLE ArchiveFiles (EpisodeId VARCHAR NOT NULL PRIMARY KEY REFERENCES Episodes (EpisodeId),
                           ArchiveFile VARCHAR);
"""


def is_episode(path: Path) -> bool:
    """A TFRecord whose first record is a timestep with one of Sketchy's camera images."""
    try:
        locations = scan_records(path)
        if not locations:
            return False
        features = describe(read_record(path, locations[0].offset, 0), str(path))
    except (DatasetFormatError, OSError, ValueError):
        return False
    return any(camera in features for camera in CAMERAS)


def build_metadata(root: str | Path, tag: str, episode_type: str) -> tuple[Path, list[Path], list[Path]]:
    """Write ``root/metadata.sqlite``; returns (its path, the episode files indexed, the files skipped)."""
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"{root} is not a folder")
    candidates = sorted(p for p in root.rglob("*") if p.is_file() and not p.suffix and p.name != "metadata")
    episodes = [p for p in candidates if is_episode(p)]
    skipped = [p for p in candidates if p not in set(episodes)]
    if not episodes:
        raise DatasetFormatError(f"no Sketchy episode files (TFRecords of timesteps) under {root}")
    ids = [p.name for p in episodes]
    if len(set(ids)) != len(ids):
        raise DatasetFormatError(f"episode file names must be unique under {root}: they are the episode ids")
    path = root / "metadata.sqlite"
    path.unlink(missing_ok=True)
    with sqlite3.connect(path) as db:
        db.executescript(SCHEMA)
        db.execute("INSERT INTO Tags VALUES (?)", (tag,))
        for episode in episodes:
            db.execute(
                "INSERT INTO Episodes VALUES (?, ?, ?, ?, ?)",
                (episode.name, "", str(episode.relative_to(root)), int(episode.stat().st_mtime), episode_type),
            )
            db.execute("INSERT INTO EpisodeTags VALUES (?, ?)", (episode.name, tag))
            db.execute("INSERT INTO ArchiveFiles VALUES (?, ?)", (episode.name, None))
    return path, episodes, skipped


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m training.datasets.sketchy_metadata", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("root", help="folder holding the extracted episode files")
    parser.add_argument("--tag", default="rgb30__all", help="the EpisodeTags tag given to every episode")
    parser.add_argument("--type", default="EPISODE_ROBOT_AGENT", help="the EpisodeType of every episode")
    args = parser.parse_args(argv)
    try:
        path, episodes, skipped = build_metadata(args.root, args.tag, args.type)
    except (FileNotFoundError, DatasetFormatError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    for p in skipped:
        print(f"skipped (not a Sketchy episode): {p}")
    print(f"wrote {path}: {len(episodes)} episode(s), tag {args.tag!r}, type {args.type!r}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
