"""``srcrn serve`` under a bounded load, side by side with ``Pipeline.predict_many`` on the same
images, in one run:

    .venv/bin/python benchmarks/serve.py --model BUNDLE [--requests 200] [--data DIR]

The server runs as its own process on 127.0.0.1 (``--queue`` raised above the largest client
concurrency, so that no request is shed: shedding is tested in tests/test_serve.py). Each level
of client concurrency sends ``--requests`` uploads of real ISIC JPEGs; a last run sends 20 %
bad uploads (not images, truncated JPEGs) at concurrency 4. Printed: requests/s, latency
percentiles, answers by status, good requests that failed, and the server's resident memory
before and after. The load generator shares the machine's cores with the server.
"""

from __future__ import annotations

import argparse
import json
import platform
import random
import socket
import subprocess
import sys
import time
import urllib.request
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np

from srcrn.inference.pipeline import Pipeline

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA = ROOT.parent / "shared" / "data" / "isic-dev"
LEVELS = (1, 4, 16)


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def start_server(bundle: Path, queue: int) -> tuple[subprocess.Popen, str]:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    command = [sys.executable, "-m", "srcrn", "serve", "--model", str(bundle), "--port", str(port),
               "--queue", str(queue)]  # fmt: skip
    child = subprocess.Popen(command)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"{url}/api/v1/ready", timeout=2) as answer:
                if json.load(answer)["status"] == "ready":
                    return child, url
        except OSError:
            time.sleep(0.2)
    child.kill()
    raise SystemExit("the server did not become ready in 120 s")


def load(url: str, uploads: list[tuple[str, bytes, bool]], concurrency: int, query: str = "") -> dict:
    """Send every upload (name, bytes, good?) with ``concurrency`` clients; time each answer."""

    def send(upload: tuple[str, bytes, bool]) -> tuple[int, float, bool]:
        name, content, good = upload
        started = time.perf_counter()
        try:
            answer = client.post(f"{url}/api/v1/predict{query}", files={"image": (name, content, "image/jpeg")})
            status = answer.status_code
        except httpx.HTTPError:
            status = 0  # no answer at all
        return status, time.perf_counter() - started, good

    with httpx.Client(timeout=300, limits=httpx.Limits(max_connections=concurrency)) as client:
        started, cpu = time.perf_counter(), time.process_time()
        with ThreadPoolExecutor(concurrency) as pool:
            answers = list(pool.map(send, uploads))
        wall, cpu = time.perf_counter() - started, time.process_time() - cpu
    latencies = np.array([seconds for _, seconds, _ in answers]) * 1000
    return {
        "requests_per_second": len(uploads) / wall,
        "p50": float(np.percentile(latencies, 50)),
        "p95": float(np.percentile(latencies, 95)),
        "p99": float(np.percentile(latencies, 99)),
        "statuses": dict(sorted(Counter(status for status, _, _ in answers).items())),
        "good_failed": sum(1 for status, _, good in answers if good and status != 200),
        "client_cpu_share": cpu / wall,  # of one core: what the load generator took from the server
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, required=True, help="bundle folder of srcrn export onnx")
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--requests", type=int, default=200, help="uploads per run")
    parser.add_argument("--images", type=int, default=50, help="distinct images cycled through")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    images = sorted((args.data / "images").glob("ISIC_*.jpg"))[: args.images]
    if not images:
        raise SystemExit(f"{args.data}/images: no ISIC JPEGs (pass --data)")
    contents = [(p.name, p.read_bytes(), True) for p in images]
    cycle = [contents[i % len(contents)] for i in range(args.requests)]
    rng = random.Random(args.seed)
    mixed = []  # a fifth of the uploads replaced by a non-image or a truncated JPEG
    for name, content, good in cycle:
        bad = rng.random() < 0.2
        mixed.append(
            (name, rng.choice([b"not an image", content[: len(content) // 3]]), False) if bad else (name, content, good)
        )
    print(f"machine: {platform.machine()}, {len(images)} JPEGs from {args.data}, {args.requests} requests per run")

    pipeline = Pipeline.from_bundle(args.model)
    pipeline.predict_many(images[:16], batch_size=16)  # warm-up
    cycle_paths = [images[i % len(images)] for i in range(args.requests)]

    def in_process_speed() -> float:
        started = time.perf_counter()
        pipeline.predict_many(cycle_paths, batch_size=16)
        return len(cycle_paths) / (time.perf_counter() - started)

    # Measured before and after the server's runs (this shared machine's speed drifts).
    speeds = [in_process_speed()]
    server, url = start_server(args.model, queue=max(LEVELS) * 4)
    try:
        before = rss_mb(server.pid)
        runs = {f"concurrency {c}": load(url, cycle, c) for c in LEVELS}
        runs["concurrency 4, 20 % bad uploads"] = load(url, mixed, 4)
        # Without the mask and overlay PNGs in the answers: what encoding them costs.
        runs["concurrency 16, ?images=false"] = load(url, cycle, 16, "?images=false")
        after = rss_mb(server.pid)
    finally:
        server.terminate()
        server.wait(30)
    speeds.append(in_process_speed())
    in_process = sum(speeds) / 2
    print(
        f"\nPipeline.predict_many (batch 16, in process, no HTTP, the same {args.requests} images): "
        f"{speeds[0]:.2f} images/s before the server runs, {speeds[1]:.2f} after; mean {in_process:.2f}"
    )
    print(f"server RSS: {before:.0f} MB after warm-up, {after:.0f} MB after all runs ({after / before - 1:+.1%})\n")
    print("| run | requests/s | vs predict_many | p50 ms | p95 ms | p99 ms | answers by status | good failed "
          "| load generator CPU (cores) |")  # fmt: skip
    print("|---|---|---|---|---|---|---|---|---|")
    for name, r in runs.items():
        statuses = ", ".join(f"{k}: {v}" for k, v in r["statuses"].items())
        print(
            f"| {name} | {r['requests_per_second']:.2f} | {r['requests_per_second'] / in_process:.2f}x | "
            f"{r['p50']:.0f} | {r['p95']:.0f} | {r['p99']:.0f} | {statuses} | {r['good_failed']} | "
            f"{r['client_cpu_share']:.2f} |"
        )


if __name__ == "__main__":
    main()
