"""QoS profiles by what they promise, so that the nodes, the demo and their clients spell each one once."""

from __future__ import annotations

from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy


def keep_last(depth: int, reliable: bool = True, latched: bool = False) -> QoSProfile:
    """Keep the last ``depth`` messages; reliable, or best effort (what `sensor_data` cameras offer);
    ``latched`` (transient local): a subscriber that matches late still gets the messages it missed."""
    return QoSProfile(
        reliability=ReliabilityPolicy.RELIABLE if reliable else ReliabilityPolicy.BEST_EFFORT,
        history=HistoryPolicy.KEEP_LAST,
        depth=depth,
        durability=DurabilityPolicy.TRANSIENT_LOCAL if latched else DurabilityPolicy.VOLATILE,
    )
