"""savi_core: SAVi (Slot Attention for Video) in pure PyTorch, plus the ROS-free Tracker.

Never imports ROS or dataset code; the node, the trainer and offline tools all build on it.
"""

from savi_core.config import ConfigError, ModelConfig, preset
from savi_core.initializers import Conditioning
from savi_core.savi import SAVi, SAViOutput, StepOutput

__all__ = ["ConfigError", "Conditioning", "ModelConfig", "SAVi", "SAViOutput", "StepOutput", "preset"]
