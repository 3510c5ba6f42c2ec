"""CPU numerics: denormal results are flushed to zero once `flush_denormals` ran."""

import torch

from savi_core.numerics import flush_denormals


def test_flush_denormals_makes_denormal_results_zero():
    tiny = torch.tensor([1e-30], dtype=torch.float32)
    try:
        assert flush_denormals()  # x86 with SSE3 (all our machines)
        assert (tiny * 1e-10).item() == 0.0  # 1e-40 is a float32 denormal
        torch.set_flush_denormal(False)
        assert (tiny * 1e-10).item() > 0.0
    finally:
        torch.set_flush_denormal(True)
