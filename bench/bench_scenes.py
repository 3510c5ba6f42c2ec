"""Benchmark: scene generation speed per world, so training is not bound by its data.

Prints videos/s (24 frames) for the original 2D generator, the randomized 2D worlds and the 3D physics
family at 64x64 and 128x128, with the ratio to a fp32 matmul measured in the same run. A training step
of the default config (batch 8) needs 8 videos; compare with its s/step.
Run: ``.venv/bin/python bench/bench_scenes.py [--videos 10]``.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from savi_scenes import PhysicsSceneConfig, SceneConfig, generate_physics_scene, generate_scene

RANDOMIZED = dict(
    shapes=("circle", "polygon", "blob", "star"),
    backgrounds=("multicolour", "bold_stripes", "photo"),
    textures=("solid", "noise", "dots"),
    object_saturation=(0.0, 1.0),
    background_saturation=(0.0, 1.0),
    effects=True,
    distractors=(0, 3),
    camera_pan=True,
    zoom_range=(1.0, 1.5),
)


def matmul_gflops(n: int = 512, repeats: int = 20) -> float:
    a, b = np.random.rand(n, n).astype(np.float32), np.random.rand(n, n).astype(np.float32)
    a @ b
    start = time.perf_counter()
    for _ in range(repeats):
        a @ b
    return 2 * n**3 * repeats / (time.perf_counter() - start) / 1e9


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--videos", type=int, default=10)
    args = parser.parse_args()
    print(f"numpy fp32 matmul (512^3): {matmul_gflops():.1f} GFLOP/s")
    for size in (64, 128):
        worlds = {
            "2d original": lambda seed: generate_scene(seed, SceneConfig(height=size, width=size)),
            "2d randomized": lambda seed: generate_scene(seed, SceneConfig(height=size, width=size, **RANDOMIZED)),
            "3d physics": lambda seed: generate_physics_scene(seed, PhysicsSceneConfig(height=size, width=size)),
        }
        for name, make in worlds.items():
            make(0)  # warm-up (imports, pybullet data)
            start = time.perf_counter()
            for seed in range(1, args.videos + 1):
                make(seed)
            rate = args.videos / (time.perf_counter() - start)
            print(f"{size}x{size} {name:14s}: {rate:6.1f} videos/s ({1000 / rate:6.0f} ms/video)")


if __name__ == "__main__":
    main()
