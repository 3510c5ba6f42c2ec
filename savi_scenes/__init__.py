"""Synthetic MOVi-like scenes with exact ground truth (pure numpy/OpenCV).

Shared by the trainer, the tests and the ROS demo without any of them importing each other.
"""

from savi_scenes.generator import Scene, SceneConfig, generate_scene
from savi_scenes.physics3d import PhysicsSceneConfig, generate_physics_scene
from savi_scenes.shapes import SHAPES

__all__ = ["SHAPES", "PhysicsSceneConfig", "Scene", "SceneConfig", "generate_physics_scene", "generate_scene"]
