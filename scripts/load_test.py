#!/usr/bin/env python
"""Bounded load test of the Gradio demo on this machine (loopback only).

Two subcommands, meant to run as separate processes:

    # 1. the server: the demo exactly as ``python -m demo.app`` builds it, bound to 127.0.0.1
    python scripts/load_test.py serve --model RUN_OR_MODEL --port 7870 --ready-file /tmp/ready

    # 2. the client: bursts of concurrent requests, then N sequential ones while the server's
    #    memory (RSS, read from /proc) is sampled; prints and writes one JSON report
    python scripts/load_test.py run --url http://127.0.0.1:7870 --server-pid PID \\
        --image face.jpg --video clip.mp4 --images 50 --videos 5 --sequential 500 --out report.json

``--busy-url`` points the client at a second server started with a small ``--queue-size``: a
burst larger than its queue must be answered "busy" (Gradio's "Queue is full") and every other
request must succeed, and the server must still answer afterwards.

Every request is counted as ``ok``, ``busy`` or ``error``; latencies (submit to result, so
queueing included) are reported as p50/p90/p99/max in seconds. Nothing leaves 127.0.0.1.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

LOOPBACK = {"127.0.0.1", "localhost", "::1"}


# ------------------------------------------------------------------ server

def serve(args: argparse.Namespace) -> int:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from demo import app as demo_app

    options = {} if args.queue_size is None else {"queue_size": args.queue_size}
    demo = demo_app.build_demo(args.model, **options)
    _, url, _ = demo.launch(server_name="127.0.0.1", server_port=args.port, prevent_thread_lock=True, quiet=True,
                            **demo_app.launch_options())
    # SIGTERM and SIGINT (even when the shell started us in the background, which ignores SIGINT)
    # stop the server through demo.close(), so its temporary files are deleted.
    def stop(*_):
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    if args.ready_file:
        Path(args.ready_file).write_text(json.dumps({"url": url, "pid": os.getpid()}))
    print(f"READY {url}", flush=True)
    try:
        demo.block_thread()
    except KeyboardInterrupt:
        pass
    finally:
        demo.close()
    return 0


# ------------------------------------------------------------------ client

def rss_mb(pid: int) -> float | None:
    """Resident memory of a process in MB (Linux /proc), or None."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def percentiles(values: list[float]) -> dict[str, float | None]:
    if not values:
        return {"p50": None, "p90": None, "p99": None, "max": None}
    ordered = sorted(values)

    def pick(q: float) -> float:  # nearest-rank percentile
        return round(ordered[min(len(ordered) - 1, max(0, int(-(-q * len(ordered) // 100)) - 1))], 3)

    return {"p50": pick(50), "p90": pick(90), "p99": pick(99), "max": round(ordered[-1], 3)}


def outcome(error: BaseException | None) -> str:
    if error is None:
        return "ok"
    return "busy" if "queue is full" in str(error).lower() else "error"


class Tally:
    """Outcome and latency of every request of one kind."""

    def __init__(self) -> None:
        self.latencies: list[float] = []
        self.counts = {"ok": 0, "busy": 0, "error": 0}
        self.errors: list[str] = []
        self.lock = threading.Lock()

    def add(self, seconds: float, error: BaseException | None) -> None:
        with self.lock:
            kind = outcome(error)
            self.counts[kind] += 1
            if kind == "ok":
                self.latencies.append(seconds)
            elif kind == "error" and len(self.errors) < 5:
                self.errors.append(f"{type(error).__name__}: {str(error)[:200]}")

    def report(self) -> dict:
        return {"n": sum(self.counts.values()), **self.counts, **percentiles(self.latencies),
                **({"errors_seen": self.errors} if self.errors else {})}


def _check_loopback(url: str) -> None:
    host = urlparse(url).hostname
    if host not in LOOPBACK:
        raise SystemExit(f"error: this load test only talks to 127.0.0.1, not {host}")


def burst(client, jobs: list[tuple[str, tuple]], timeout: float) -> dict[str, Tally]:
    """Submit every job at once; wait for all; tally by endpoint."""
    from gradio_client import handle_file

    tallies: dict[str, Tally] = {}
    started = []
    for api_name, inputs in jobs:
        args = tuple(handle_file(a) if isinstance(a, Path) else a for a in inputs)
        started.append((api_name, time.perf_counter(), client.submit(*args, api_name=api_name)))
    for api_name, start, job in started:
        error = None
        try:
            job.result(timeout=timeout)
        except Exception as e:  # noqa: BLE001 - every failure is counted and reported
            error = e
        tallies.setdefault(api_name, Tally()).add(time.perf_counter() - start, error)
    return tallies


def sequential(client, image: Path, n: int, pid: int | None, every: int, timeout: float) -> dict:
    from gradio_client import handle_file

    tally, samples = Tally(), []
    if pid:
        samples.append((0, rss_mb(pid)))
    for i in range(1, n + 1):
        start, error = time.perf_counter(), None
        try:
            client.submit(handle_file(image), api_name="/predict_image").result(timeout=timeout)
        except Exception as e:  # noqa: BLE001
            error = e
        tally.add(time.perf_counter() - start, error)
        if pid and (i % every == 0 or i == n):
            samples.append((i, rss_mb(pid)))
    report = tally.report()
    if samples:
        warm = max(1, n // 5)  # the first fifth warms caches, allocator pools and lazy imports
        after = [(i, m) for i, m in samples if i >= warm and m is not None]
        report.update({
            "rss_mb": [[i, round(m, 1)] for i, m in samples if m is not None],
            "rss_start_mb": None if samples[0][1] is None else round(samples[0][1], 1),
            "rss_after_warmup_mb": round(after[0][1], 1),
            "rss_end_mb": round(after[-1][1], 1),
            "rss_growth_after_warmup_mb": round(after[-1][1] - after[0][1], 1),
            "rss_growth_per_100_requests_mb": round(_slope(after) * 100, 2),
        })
    return report


def _slope(points: list[tuple[int, float]]) -> float:
    """Least-squares slope of memory against request count (MB per request)."""
    if len(points) < 2:
        return 0.0
    xs, ys = [p[0] for p in points], [p[1] for p in points]
    mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
    den = sum((x - mx) ** 2 for x in xs)
    return sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / den if den else 0.0


def machine() -> dict:
    info: dict[str, Any] = {"platform": platform.platform(), "python": platform.python_version(),
                            "cpus": os.cpu_count()}
    try:
        model = next(line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                     if line.startswith("model name"))
        info["cpu"] = model
        info["memory_gb"] = round(int(Path("/proc/meminfo").read_text().split()[1]) / 1024 ** 2, 1)
    except (OSError, StopIteration, ValueError):
        pass
    try:
        info["load_average"] = [round(v, 2) for v in os.getloadavg()]
    except OSError:
        pass
    return info


def run(args: argparse.Namespace) -> int:
    from gradio_client import Client

    for url in filter(None, (args.url, args.busy_url)):
        _check_loopback(url)
    image, video = Path(args.image), Path(args.video)
    report: dict = {"date": time.strftime("%Y-%m-%d %H:%M:%S %Z"), "machine": machine(),
                    "settings": {"images": args.images, "videos": args.videos, "sequential": args.sequential}}
    started = time.perf_counter()
    phases: dict[str, float] = {}  # seconds of each phase, connecting included in the first
    client = Client(args.url, verbose=False, max_workers=args.images + args.videos + 4)
    try:
        jobs = [("/predict_video", (video, 1, 3))] * args.videos + [("/predict_image", (image,))] * args.images
        tallies = burst(client, jobs, args.timeout)
        report["burst"] = {name.strip("/"): t.report() for name, t in tallies.items()}
        phases["burst"] = round(time.perf_counter() - started, 1)
        report["sequential"] = sequential(client, image, args.sequential, args.server_pid, args.rss_every,
                                          args.timeout)
        phases["sequential"] = round(time.perf_counter() - started - sum(phases.values()), 1)
    finally:
        client.close()
    if args.busy_url:
        busy_client = Client(args.busy_url, verbose=False, max_workers=args.busy_burst + 4)
        try:
            tallies = burst(busy_client, [("/predict_video", (video, 1, 1))] * args.busy_burst, args.timeout)
            report["busy_burst"] = tallies["/predict_video"].report()
            after = burst(busy_client, [("/predict_image", (image,))], args.timeout)["/predict_image"]
            report["busy_burst"]["request_after_burst"] = outcome(None) if after.counts["ok"] else "failed"
        finally:
            busy_client.close()
    report["load_average_after"] = [round(v, 2) for v in os.getloadavg()]
    report["seconds"] = round(time.perf_counter() - started, 1)
    if args.busy_url:
        phases["busy_burst"] = round(report["seconds"] - sum(phases.values()), 1)
    report["phase_seconds"] = phases
    text = json.dumps(report, indent=2)
    if args.out:
        Path(args.out).write_text(text + "\n")
    print(text)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="scripts/load_test.py", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    s = sub.add_parser("serve", help="run the demo on 127.0.0.1 for a load test")
    s.add_argument("--model", required=True, help="model folder or run folder")
    s.add_argument("--port", type=int, required=True)
    s.add_argument("--queue-size", type=int, default=None, help="default: the demo's own QUEUE_SIZE")
    s.add_argument("--ready-file", help="written with the URL and pid once the server answers")
    r = sub.add_parser("run", help="send the load and report")
    r.add_argument("--url", required=True, help="http://127.0.0.1:PORT of a `serve` process")
    r.add_argument("--server-pid", type=int, help="pid of the server, to sample its memory")
    r.add_argument("--image", required=True, help="image file sent to /predict_image")
    r.add_argument("--video", required=True, help="video file sent to /predict_video")
    r.add_argument("--images", type=int, default=50, help="concurrent image requests in the burst")
    r.add_argument("--videos", type=int, default=5, help="concurrent video requests in the burst")
    r.add_argument("--sequential", type=int, default=100, help="sequential image requests (memory check)")
    r.add_argument("--rss-every", type=int, default=10, help="sample the server's memory every K requests")
    r.add_argument("--busy-url", help="a second server with a small --queue-size, for the busy check")
    r.add_argument("--busy-burst", type=int, default=8, help="concurrent video requests sent to --busy-url")
    r.add_argument("--timeout", type=float, default=180, help="seconds to wait for one request")
    r.add_argument("--out", help="also write the JSON report here")
    args = parser.parse_args(argv)
    return serve(args) if args.command == "serve" else run(args)


if __name__ == "__main__":
    sys.exit(main())
