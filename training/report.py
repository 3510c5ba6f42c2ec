"""What an evaluation prints and draws: the method table and the per-frame curves."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np


def plot_per_frame(results: dict[str, Any], path: Path) -> None:
    """FG-ARI and mIoU per frame index, one line per method."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    names = [n for n in ("fg_ari", "miou") if any(n in m for m in results["methods"].values())]
    fig, axes = plt.subplots(1, len(names), figsize=(5 * len(names), 3.5), squeeze=False)
    for ax, name in zip(axes[0], names):
        for method, values in results["methods"].items():
            curve = [np.nan if v is None else 100 * v for v in values.get(f"{name}_per_frame", [])]
            ax.plot(range(len(curve)), curve, marker=".", label=method)
        ax.set_title(f"{'FG-ARI' if name == 'fg_ari' else 'mIoU'} per frame")
        ax.set_xlabel("frame")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_ylabel("%")
        ax.set_ylim(0, 100)
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def format_table(results: dict[str, Any]) -> str:
    """FG-ARI, mIoU, DAVIS J&F, IDF1 (percent), ID switches per 100 object-frames and ms per frame of every
    method."""
    lines = [f"{'method':<18}{'FG-ARI':>8}{'mIoU':>8}{'J&F':>8}{'IDF1':>8}{'IDsw%':>8}{'ms/fr':>8}"]
    for method, values in results["methods"].items():
        cells = [
            "n/a" if values.get(n) is None else f"{100 * values[n]:.1f}" for n in ("fg_ari", "miou", "j_and_f", "idf1")
        ]
        cells.append("n/a" if values.get("id_switches_per_100") is None else f"{values['id_switches_per_100']:.2f}")
        cells.append("n/a" if values.get("ms_per_frame") is None else f"{values['ms_per_frame']:.1f}")
        lines.append(f"{method:<18}" + "".join(f"{c:>8}" for c in cells))
    return "\n".join(lines)
