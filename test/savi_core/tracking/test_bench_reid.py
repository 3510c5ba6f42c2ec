"""bench/bench_reid.py's own-id column: an object's own id is the one IDF1's id-object matching gives it, so a
slot of another track passing over it for a few frames before it vanished does not become its identity."""

import numpy as np

from test.scripts import load_script


bench_reid = load_script("bench/bench_reid.py")


def test_an_id_passing_over_an_object_for_two_frames_is_not_its_own():
    # object 0: id 3 for 3 frames, object 1's id 4 over it for 2 frames, gone, then id 3 again; object 1: id 4.
    id_on = np.array([[3, 4], [3, 4], [3, 4], [4, 4], [4, 4], [0, 4], [0, 4], [3, 4], [3, 4], [0, 0]])
    assert bench_reid.owners(id_on) == [3, 4]
    assert bench_reid.owners(np.zeros((3, 2), np.int64)) == [0, 0]


def test_a_revival_is_false_only_when_its_id_covers_none_of_its_objects_whatever_their_numbers():
    judge = bench_reid.judge_revival
    assert judge([2], [2]) == "right"
    assert judge([2], [1]) == judge([0], [1]) == "false"  # another object, numbered below or above
    assert judge([2], [1, 2]) == judge([1], [1, 2]) == "merged"  # its own object and another under one mask
    assert judge([], [1]) == judge([1], []) == "unseen"
