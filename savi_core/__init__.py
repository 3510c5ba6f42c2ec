"""savi_core: SAVi (Slot Attention for Video) in pure PyTorch (``savi_core.model``) and the ROS-free Tracker
(``savi_core.tracking``).

Never imports ROS, training or dataset code; the node, the trainer and offline tools all build on it. Tracking
builds on the model, never the reverse.
"""
