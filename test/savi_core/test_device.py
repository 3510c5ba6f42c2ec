"""Device selection: one parser of auto | cpu | cuda | cuda:N, errors naming ``device``."""

import pytest
import torch

from savi_core.device import resolve_device


def test_resolve_device():
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    with pytest.raises(ValueError, match="^device:.*'gpu'"):
        resolve_device("gpu")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="^device:.*CUDA is not available"):
            resolve_device("cuda:0")
