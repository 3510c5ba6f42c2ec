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
    # Id 4, on object 0 last before its gap, is object 1's own id; an id on no object for long is nobody's.
    assert bench_reid.whose(4, [3, 4]) == 1 and bench_reid.whose(3, [3, 4]) == 0
    assert bench_reid.whose(9, [3, 4]) is None


def test_a_revival_is_false_only_when_its_id_covers_none_of_its_objects_whatever_their_numbers():
    judge = bench_reid.judge_revival
    assert judge([2], [2]) == "right"
    assert judge([2], [1]) == judge([0], [1]) == "false"  # another object, numbered below or above
    assert judge([2], [1, 2]) == judge([1], [1, 2]) == "merged"  # its own object and another under one mask
    assert judge([], [1]) == judge([1], []) == "unseen"


def test_verbose_comparisons_name_the_frame_the_similarity_and_the_distance(capsys):
    from collections import deque
    from types import SimpleNamespace

    from savi_core.tracking.reid import Candidate, Dormancy

    dormancy = Dormancy()
    dormancy.gallery[1] = deque([np.array([1.0, 0.0], np.float32)])
    dormancy.sleep(1, "", np.array([0.0, 0.0, 10.0, 10.0]), (10.0, 10.0), 0.0)
    frame = [17]
    bench_reid._print_matches(SimpleNamespace(_book=SimpleNamespace(dormancy=dormancy)), frame)
    look = np.array([0.8, 0.6], np.float32)
    assert dormancy.match([Candidate(5, "", np.array([30.0, 40.0, 40.0, 50.0]), look)], 0.5, 100.0) == {5: 1}
    assert capsys.readouterr().out.split() == "frame 17 compare new 5 [10.0, 10.0] -> 1: 1D:0.80@[10, 10]~0.50".split()
