"""The Tracker over the SAVi model: detections and prompts in, tracks and label maps out; no ROS."""
