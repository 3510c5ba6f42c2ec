"""Two processes exchange sensor_msgs/Image and vision_msgs/Detection2DArray over DDS (Fast DDS).

Proves the venv's ROS 2 wheels, the built vision_msgs type support and discovery all work. The
child inherits this process's environment unchanged: the wheels' bootstrap guard and the
LD_LIBRARY_PATH it set belong together (keep both or drop both), and ROS_DOMAIN_ID comes from
test/conftest.py.
"""

import os
import runpy
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

CHILD = Path(__file__).with_name("dds_publisher_child.py")
TIMEOUT_S = 20.0


@pytest.fixture
def ros_node():
    import rclpy

    context = rclpy.Context()
    rclpy.init(context=context)
    node = rclpy.create_node("foundation_dds_receiver", context=context)
    executor = rclpy.executors.SingleThreadedExecutor(context=context)
    executor.add_node(node)
    yield node, executor
    # Detach the node before destroying it, then stop the executor: destroying a node an executor still
    # holds has crashed rclpy's teardown under load.
    executor.remove_node(node)
    node.destroy_node()
    executor.shutdown()
    context.try_shutdown()


def test_image_and_detections_cross_process_boundary(ros_node):
    from sensor_msgs.msg import Image
    from vision_msgs.msg import Detection2DArray

    node, executor = ros_node
    suffix = uuid.uuid4().hex[:8]
    image_topic, detections_topic = f"/foundation_{suffix}/image", f"/foundation_{suffix}/detections"
    received = {}
    node.create_subscription(Image, image_topic, lambda m: received.setdefault("image", m), 10)
    node.create_subscription(Detection2DArray, detections_topic, lambda m: received.setdefault("detections", m), 10)

    child = subprocess.Popen(
        [sys.executable, str(CHILD), image_topic, detections_topic],
        env=dict(os.environ),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        deadline = time.monotonic() + TIMEOUT_S
        while len(received) < 2 and time.monotonic() < deadline and child.poll() is None:
            executor.spin_once(timeout_sec=0.1)
    finally:
        child.kill()
        output = child.communicate()[0]
    assert set(received) == {"image", "detections"}, f"got {sorted(received)}; child said:\n{output}"

    expected = runpy.run_path(str(CHILD))
    image, detections = received["image"], received["detections"]
    assert image == expected["build_image"]()
    assert (image.height, image.width, image.encoding, image.step) == (3, 4, "rgb8", 12)
    assert bytes(image.data) == bytes((7 * i + 1) % 256 for i in range(36))

    assert detections == expected["build_detections"]()
    (detection,) = detections.detections
    (result,) = detection.results
    assert detection.id == "track-42"
    assert (detection.bbox.center.position.x, detection.bbox.center.position.y, detection.bbox.center.theta) == (
        12.5,
        7.25,
        0.5,
    )
    assert (result.hypothesis.class_id, result.hypothesis.score) == ("cup", 0.875)
    assert (result.pose.pose.position.y, result.pose.pose.orientation.w) == (-2.0, 0.8)
    assert list(result.pose.covariance) == [i / 8 for i in range(36)]
    assert detections.header.stamp.sec == 1700000000 and detections.header.frame_id == "camera_optical"


def test_each_pytest_xdist_worker_gets_its_own_domain_inside_the_range():
    from test.conftest import DOMAIN_ID_RANGE, _worker_domain

    low, high = DOMAIN_ID_RANGE
    for base in (low, 50, high):
        domains = [_worker_domain(base, f"gw{n}") for n in range(4)]
        assert len(set(domains)) == 4
        assert all(low <= d <= high for d in domains)
        assert domains[0] == base
    assert _worker_domain(high, "gw1") == low
