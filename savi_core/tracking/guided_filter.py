"""The guided filter (He, Sun and Tang, 2013) with its linear coefficients exposed, so that they can be fitted
at one resolution and applied at another: the fast guided filter (He and Sun, 2015).

Slot masks come at the model resolution, a camera image at its own. Fitted on the model-resolution frame
and applied to the camera image, the filter puts the mask edges on the camera's edges, which are finer
than a model pixel. OpenCV's ``ximgproc.guidedFilter`` computes the same filter (to float rounding, tested)
but returns only its output at the guide's own resolution, hence this small version of its arithmetic:
box means by ``cv2.boxFilter``, a closed-form inverse of each pixel's 3x3 colour covariance.
"""

from __future__ import annotations

import cv2
import numpy as np


def _mean(planes: np.ndarray, radius: int) -> np.ndarray:
    """Mean over the ``(2 radius + 1)``-square window of each pixel of each plane of ``[C, h, w]``
    (OpenCV's border)."""
    size = 2 * radius + 1
    out = np.empty_like(planes)
    for plane, mean in zip(planes, out):
        cv2.boxFilter(plane, -1, (size, size), dst=mean, normalize=True, borderType=cv2.BORDER_REFLECT)
    return out


def coefficients(guide: np.ndarray, planes: np.ndarray, radius: int, eps: float) -> np.ndarray:
    """The window-averaged linear model of ``planes`` ``[k, h, w]`` in the colours of ``guide`` ``[3, h, w]``
    (float32 planes, intensities in [0, 1]; ``eps`` in squared intensity): ``[4k, h, w]`` float32, per
    plane the weights of the guide's three channels (channel-major: ``[c*k + j]``), then the offsets."""
    k = planes.shape[0]
    g = guide
    m = _mean(g, radius)
    mean_p = _mean(planes, radius)
    products = _mean(np.stack([g[0] * g[0], g[0] * g[1], g[0] * g[2], g[1] * g[1], g[1] * g[2], g[2] * g[2]]), radius)
    # The 3x3 covariance of the guide in each window (regularised), inverted by cofactors.
    v00 = products[0] - m[0] * m[0] + eps
    v01 = products[1] - m[0] * m[1]
    v02 = products[2] - m[0] * m[2]
    v11 = products[3] - m[1] * m[1] + eps
    v12 = products[4] - m[1] * m[2]
    v22 = products[5] - m[2] * m[2] + eps
    c00, c01, c02 = v11 * v22 - v12 * v12, v02 * v12 - v01 * v22, v01 * v12 - v02 * v11
    c11, c12, c22 = v00 * v22 - v02 * v02, v01 * v02 - v00 * v12, v00 * v11 - v01 * v01
    inv_det = np.float32(1.0) / (v00 * c00 + v01 * c01 + v02 * c02)
    cross = _mean((g[:, None] * planes[None]).reshape(3 * k, *planes.shape[1:]), radius)
    cov = [cross[c * k : (c + 1) * k] - m[c] * mean_p for c in range(3)]
    out = np.empty((4 * k, *planes.shape[1:]), np.float32)
    offset = out[3 * k :]
    offset[:] = mean_p
    for c, row in enumerate(((c00, c01, c02), (c01, c11, c12), (c02, c12, c22))):
        weight = out[c * k : (c + 1) * k]
        np.multiply(row[0] * inv_det, cov[0], out=weight)
        weight += (row[1] * inv_det) * cov[1]
        weight += (row[2] * inv_det) * cov[2]
        offset -= weight * m[c]
    return _mean(out, radius)


def apply(coefficients: np.ndarray, guide: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """The filtered planes ``[k, H, W]`` (into ``out`` if given) for ``guide`` ``[3, H, W]`` (float32 in [0, 1])
    from `coefficients` fitted at any resolution (resampled bilinearly to the guide's). One plane at a time:
    the resampled coefficients of all of them would be megabytes, mapped and faulted in on every call under
    the node's malloc settings (savi_ros/memory.py)."""
    height, width = guide.shape[1:]
    k = coefficients.shape[0] // 4
    out = np.empty((k, height, width), np.float32) if out is None else out
    resized = np.empty((4, height, width), np.float32)
    same = coefficients.shape[1:] == (height, width)
    for j, plane in enumerate(out):
        weights = [coefficients[c * k + j] for c in range(4)]  # the three channels' weights, the offset
        if not same:
            for w, r in zip(weights, resized):
                cv2.resize(w, (width, height), dst=r, interpolation=cv2.INTER_LINEAR)
            weights = resized
        plane[:] = weights[3]
        for c in range(3):
            plane += weights[c] * guide[c]
    return out
