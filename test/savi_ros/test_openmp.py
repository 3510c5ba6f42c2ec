import threading

import pytest
import torch

from savi_ros.openmp import in_own_thread


def test_runs_in_a_thread_that_ends_and_returns_the_value():
    seen = {}

    def work(a, b=0):
        seen["thread"] = threading.current_thread()
        return torch.arange(a).sum().item() + b

    assert in_own_thread(work, 5, b=1) == 11
    assert seen["thread"] is not threading.current_thread() and not seen["thread"].is_alive()


def test_an_exception_reaches_the_caller():
    def fail():
        raise ValueError("bad checkpoint")

    with pytest.raises(ValueError, match="bad checkpoint"):
        in_own_thread(fail)
