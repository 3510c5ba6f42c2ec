"""Stand-ins for a camera and a detector on the wire, and the `make demo` orchestrator.

`camera_node` plays synthetic `savi_scenes` videos as `sensor_msgs/Image`, `detector_node` answers
with `vision_msgs/Detection2DArray` from the scenes' ground truth, `run_demo` runs both with the
tracker node as separate processes and scores what the tracker publishes; `overlay` draws masks,
boxes and ids (ROS-free, shared with the node's `debug_image`).
"""
