"""bench/profile_stream.py's report: frame kinds of bench_latency's streaming sequence apart, and the slowest
frames with what the Tracker did on them."""

from test.scripts import load_script


def test_report_splits_loop_starts_detection_and_plain_frames_and_names_the_slowest():
    profile_stream = load_script("bench/profile_stream.py")
    rows = []
    for t in range(24, 124):
        index = t % 24
        row = {
            "t": t,
            "index": index,
            "detections": index == 0 or t % 6 == 0,
            "cpu": 10.0,
            "wall": 11.0,
            "settle": 0.01,
        }
        if index == 0:
            row.update(cpu=30.0, started=[t], reclaimed=[1], settle=4.0 + t / 1000)
        elif row["detections"]:
            row["cpu"] = 12.0
        rows.append(row)
    rows[9].update(cpu=40.0, slept=[2])  # a plain frame on which a track went dormant
    text = profile_stream.report(rows).splitlines()
    kinds = {line[:33].strip(): line[33:].split() for line in text[1:5]}
    assert kinds["all"][:2] == ["100", "10.00"]
    assert kinds["loop start (objects jump back)"][:2] == ["5", "30.00"]
    assert kinds["other detection frames"][:2] == ["12", "12.00"]
    assert kinds["plain frames"][0] == "83" and kinds["plain frames"][4] == "40.00"
    assert "5 frames restarted slots, p50 4.07 ms CPU, max 4.12" in text[6]
    slowest = text[
        text.index("slowest 2% by CPU (t, scene index, detections, ms, what the Tracker did, settle ms):") + 1 :
    ]
    assert slowest[0].split() == ["33", "9", "False", "40.00", "slept", "[2]", "settle", "0.01"]
    assert (
        slowest[1].split()[1:4] == ["0", "True", "30.00"] and "started" in slowest[1] and "reclaimed [1]" in slowest[1]
    )
