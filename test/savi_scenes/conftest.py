import numpy as np


def comebacks(visible: np.ndarray, gone: int = 3) -> int:
    """Objects visible, then invisible for at least ``gone`` frames, then visible again (``visible [T, N]``)."""
    count = 0
    for column in visible.T:
        run, seen = 0, False
        for v in column:
            if v and seen and run >= gone:
                count += 1
            run = 0 if v else run + 1
            seen = seen or bool(v)
    return count
