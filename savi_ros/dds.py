"""DDS transport settings for camera-sized messages, applied before a process creates its participant.

Fast DDS (the default RMW) moves a message larger than its shared-memory segment (512 KB) in UDP
fragments through socket buffers smaller than one 640x480 image: fragments are lost and a reliable
reader waits for the writer's next heartbeat to repair them (seen here: p90 1.6 s, p99 2.9 s at
640x480 instead of 29 / 32 ms). `fastdds_large_messages.xml` beside this module sizes both for
images. Every process that publishes or subscribes camera-sized messages needs it: the tracker node
and the demo camera apply it themselves (the demo detector only handles detections); give it to your
camera driver with ``export FASTDDS_DEFAULT_PROFILES_FILE=$(python -m savi_ros.dds)``.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Optional

PROFILE = Path(__file__).resolve().parent / "fastdds_large_messages.xml"
PROFILE_VARIABLES = ("FASTDDS_DEFAULT_PROFILES_FILE", "FASTRTPS_DEFAULT_PROFILES_FILE")


def use_large_message_profile() -> Optional[Path]:
    """Point Fast DDS at the large-message profile unless the user chose a profile or another RMW.

    Call before ``rclpy.init``; returns the profile's path when it was applied, else None.
    """
    rmw = os.environ.get("RMW_IMPLEMENTATION", "")
    if rmw and not rmw.startswith("rmw_fastrtps"):
        return None
    if any(os.environ.get(name) for name in PROFILE_VARIABLES) or not PROFILE.exists():
        return None
    os.environ["FASTDDS_DEFAULT_PROFILES_FILE"] = str(PROFILE)
    return PROFILE


if __name__ == "__main__":  # print the profile's path, for `export FASTDDS_DEFAULT_PROFILES_FILE=$(...)`
    print(PROFILE)
    sys.exit(0)
