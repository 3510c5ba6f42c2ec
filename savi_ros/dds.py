"""DDS transport settings for camera-sized messages, applied before a process creates its participant.

Fast DDS (the default RMW) moves a message larger than its shared-memory segment (512 KB) in UDP
fragments through socket buffers smaller than one 640x480 image: fragments are lost and a reliable
reader waits for the writer's next heartbeat to repair them (seen here: p90 1.6 s, p99 2.9 s at
640x480 instead of 29 / 32 ms). `fastdds_large_messages.xml` beside this module sizes both for
images. Every process that publishes or subscribes camera-sized messages needs it: the tracker node
and the demo camera apply it themselves (the demo detector only handles detections); give it to your
camera driver with ``export FASTDDS_DEFAULT_PROFILES_FILE=$(python -m savi_ros.dds)``.

The profile also frees each message's history buffer after use, where rmw_fastrtps would keep buffers grown
to the largest message (issue 27: ~100 MB held after a few 4000x3000 images); rmw_fastrtps applies a
profile's history memory policy only under ``RMW_FASTRTPS_USE_QOS_FROM_XML=1``, set here with the profile
(the ROS QoS of each topic still applies: the profile sets nothing else).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Optional

PROFILE = Path(__file__).resolve().parent / "fastdds_large_messages.xml"
PROFILE_VARIABLES = ("FASTDDS_DEFAULT_PROFILES_FILE", "FASTRTPS_DEFAULT_PROFILES_FILE")
QOS_FROM_XML = "RMW_FASTRTPS_USE_QOS_FROM_XML"


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
    os.environ.setdefault(QOS_FROM_XML, "1")
    return PROFILE


if __name__ == "__main__":  # print the profile's path, for `export FASTDDS_DEFAULT_PROFILES_FILE=$(...)`
    print(PROFILE)
    sys.exit(0)
