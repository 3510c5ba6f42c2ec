"""Child process of test_foundation_dds_exchange.py: publishes one Image and one Detection2DArray
(with a nested ObjectHypothesisWithPose) over DDS, repeatedly, until killed or a deadline passes.

Usage: python dds_publisher_child.py IMAGE_TOPIC DETECTIONS_TOPIC
The test builds the same messages with these functions and compares what arrives field by field.
"""

import sys
import time

STAMP = (1700000000, 123456789)
FRAME_ID = "camera_optical"
HEIGHT, WIDTH = 3, 4


def build_image():
    from sensor_msgs.msg import Image

    msg = Image()
    msg.header.stamp.sec, msg.header.stamp.nanosec = STAMP
    msg.header.frame_id = FRAME_ID
    msg.height, msg.width = HEIGHT, WIDTH
    msg.encoding = "rgb8"
    msg.is_bigendian = 0
    msg.step = WIDTH * 3
    msg.data = bytes((7 * i + 1) % 256 for i in range(HEIGHT * WIDTH * 3))
    return msg


def build_detections():
    from vision_msgs.msg import Detection2D, Detection2DArray, ObjectHypothesisWithPose

    hypothesis = ObjectHypothesisWithPose()
    hypothesis.hypothesis.class_id = "cup"
    hypothesis.hypothesis.score = 0.875
    hypothesis.pose.pose.position.x, hypothesis.pose.pose.position.y, hypothesis.pose.pose.position.z = 1.5, -2.0, 0.25
    hypothesis.pose.pose.orientation.z, hypothesis.pose.pose.orientation.w = 0.6, 0.8
    hypothesis.pose.covariance = [float(i) / 8 for i in range(36)]

    detection = Detection2D()
    detection.header.stamp.sec, detection.header.stamp.nanosec = STAMP
    detection.header.frame_id = FRAME_ID
    detection.id = "track-42"
    detection.bbox.center.position.x, detection.bbox.center.position.y = 12.5, 7.25
    detection.bbox.center.theta = 0.5
    detection.bbox.size_x, detection.bbox.size_y = 10.0, 6.0
    detection.results = [hypothesis]

    msg = Detection2DArray()
    msg.header = detection.header
    msg.detections = [detection]
    return msg


def main(image_topic: str, detections_topic: str, deadline_s: float = 30.0) -> None:
    import rclpy
    from sensor_msgs.msg import Image
    from vision_msgs.msg import Detection2DArray

    rclpy.init()
    node = rclpy.create_node("foundation_dds_publisher")
    image_pub = node.create_publisher(Image, image_topic, 10)
    detections_pub = node.create_publisher(Detection2DArray, detections_topic, 10)
    image, detections = build_image(), build_detections()
    end = time.monotonic() + deadline_s
    while time.monotonic() < end:
        image_pub.publish(image)
        detections_pub.publish(detections)
        time.sleep(0.05)
    node.destroy_node()
    rclpy.shutdown()


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
