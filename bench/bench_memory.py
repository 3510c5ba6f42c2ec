"""Memory benchmark: after frames of the largest size the node accepts, its RSS must come back.

Starts the real `savi_tracker` node in a subprocess (the packaged default model unless --checkpoint) and
streams three phases: steady frames (640x480 at --rate Hz, a detector every --detect-every-th frame, so
the model steps with live tracks), then --large-frames frames of --large size (4000x3000 by default, under
the default max_image_pixels), each sent once the previous one was answered, then steady frames again
for --settle seconds. The node's RSS (VmRSS of /proc/PID/status) is sampled every 50 ms. Prints the
steady RSS (mean over the last 3 s of the first phase), the peak, and the RSS after the settle phase;
exits 1 when after > steady + --tolerance MB (issue 27: within 50 MB "within a few seconds").

Run: ``.venv/bin/python bench/bench_memory.py [--large 4000x3000] [--large-frames 4] [--settle 5]``
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import threading
import time


from bench_soak import Rectangles
from node_client import TracksClient, rss_mb, tracker_and_client

SAMPLE_S = 0.05


class MemoryClient(TracksClient):
    """Records the stamps the node answered."""

    def __init__(self, namespace: str) -> None:
        super().__init__(namespace, "memory_client")
        self.start()


class RssSampler(threading.Thread):
    """The node's RSS every SAMPLE_S seconds, as (monotonic time, MB)."""

    def __init__(self, pid: int) -> None:
        super().__init__(daemon=True)
        self.pid, self.samples, self.stop = pid, [], threading.Event()

    def run(self) -> None:
        while not self.stop.is_set():
            try:
                self.samples.append((time.monotonic(), rss_mb(self.pid)))
            except OSError:  # the node exited
                return
            self.stop.wait(SAMPLE_S)

    def between(self, start: float, end: float) -> list[float]:
        return [mb for t, mb in list(self.samples) if start <= t <= end]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", default="640x480", help="steady frames")
    parser.add_argument("--large", default="4000x3000", help="large frames (at most max_image_pixels)")
    parser.add_argument("--large-frames", type=int, default=4)
    parser.add_argument("--rate", type=float, default=10.0, help="steady frames per second")
    parser.add_argument("--detect-every", type=int, default=5)
    parser.add_argument("--steady", type=float, default=20.0, help="seconds of steady frames first")
    parser.add_argument("--settle", type=float, default=5.0, help="seconds of steady frames after the large ones")
    parser.add_argument("--tolerance", type=float, default=50.0, help="MB above steady allowed after settling")
    parser.add_argument("--checkpoint", default="default")
    parser.add_argument("--param", action="append", default=[], metavar="NAME:=VALUE")
    args = parser.parse_args()
    width, height = (int(v) for v in args.size.split("x"))
    large_w, large_h = (int(v) for v in args.large.split("x"))
    # Reliable images: a best-effort 36 MB frame may be lost in transport, and this measures the node's memory.
    params = (f"checkpoint:={args.checkpoint}", "image_qos:=reliable", *args.param)
    with tracker_and_client("memory", MemoryClient, *params) as (node, client):
        sampler = RssSampler(node.pid)
        sampler.start()
        try:
            scene, t = Rectangles(width, height), 0

            def stream(seconds: float) -> None:
                nonlocal t
                start, sent = time.monotonic(), 0
                while time.monotonic() - start < seconds:
                    frame, boxes = scene.frame()
                    client.publish(
                        10**12 + t * 10**8, frame, boxes if t % args.detect_every == 0 else None, with_ids=False
                    )
                    t, sent = t + 1, sent + 1
                    time.sleep(max(0.0, start + sent / args.rate - time.monotonic()))

            stream(args.steady)
            steady_end = time.monotonic()
            steady = statistics.mean(sampler.between(steady_end - 3.0, steady_end))
            big, unanswered, answer_s = Rectangles(large_w, large_h), 0, []
            for _ in range(args.large_frames):
                frame, boxes = big.frame()
                stamp, sent = 10**12 + t * 10**8, time.monotonic()
                client.publish(stamp, frame, boxes)
                t += 1
                unanswered += not client.wait_answer(stamp, timeout=60.0)
                answer_s.append(time.monotonic() - sent)
            large_end = time.monotonic()
            stream(args.settle)
            after = sampler.samples[-1][1]
            peak = max(sampler.between(steady_end, time.monotonic()))
            lingering = sampler.between(large_end, time.monotonic())
        finally:
            sampler.stop.set()
    print(
        f"node RSS (MB): steady {steady:.0f} ({args.size} at {args.rate:g} Hz), peak {peak:.0f} over "
        f"{args.large_frames} {args.large} frames ({unanswered} unanswered; answered in "
        f"{', '.join(f'{s:.1f}' for s in answer_s)} s), after {args.settle:g} s of "
        f"{args.size} frames {after:.0f} (max in that time {max(lingering):.0f}); after - steady "
        f"{after - steady:+.0f} (limit +{args.tolerance:g}); client and node share {os.cpu_count()} cores"
    )
    return 0 if after <= steady + args.tolerance else 1


if __name__ == "__main__":
    sys.exit(main())
