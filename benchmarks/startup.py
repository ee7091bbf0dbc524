"""Start-up of a one-image prediction with the shipped model (issue 31): the wall time and peak
memory of ``srcrn predict one.jpg`` and of ``Pipeline.default()`` in fresh processes, and
whether torch was imported, for this checkout and (``--before``) another one's ``src`` folder,
in one run on one machine. Each figure is the median of ``--repeats`` runs.

    python benchmarks/startup.py [--before /path/to/other/checkout/src] [--repeats 5]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parents[1] / "src"
# A fresh interpreter that imports srcrn from SRC (not the installed editable copy).
PRELUDE = (
    "import sys; src = sys.argv[1]; sys.path.insert(0, src); "
    "sys.meta_path[:] = [f for f in sys.meta_path if 'editable' not in type(f).__module__.lower()]; "
)
DEFAULT = PRELUDE + (
    "import time; t = time.perf_counter(); import srcrn; p = srcrn.Pipeline.default(); "
    "print(time.perf_counter() - t, 'torch' in sys.modules)"
)
PREDICT = (
    PRELUDE
    + "sys.argv = ['srcrn', 'predict', sys.argv[2], '--out', sys.argv[3], '--no-progress']; "
    + ("from srcrn.cli import main; main()")
)


def timed(arguments: list[str]) -> tuple[float, float, str]:
    """Wall seconds, peak RSS (MB) and stdout of one fresh process."""
    started = time.perf_counter()
    process = subprocess.Popen(arguments, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    _, status, usage = os.wait4(process.pid, 0)
    wall = time.perf_counter() - started
    output = process.stdout.read() if process.stdout else ""
    if status:
        raise SystemExit(f"{arguments[-3:]}: exit status {status}")
    return wall, usage.ru_maxrss / 1024, output


def measure(src: Path, image: Path, repeats: int) -> dict[str, float | bool]:
    """Median figures of ``repeats`` fresh runs of both measurements for the srcrn in ``src``."""
    walls, memories, defaults, imported = [], [], [], False
    for _ in range(repeats):
        with tempfile.TemporaryDirectory() as folder:
            wall, memory, _ = timed([sys.executable, "-c", PREDICT, str(src), str(image), str(Path(folder) / "out")])
        walls.append(wall)
        memories.append(memory)
        _, _, printed = timed([sys.executable, "-c", DEFAULT, str(src)])
        seconds, torch = printed.split()
        defaults.append(float(seconds))
        imported = imported or torch == "True"
    return {
        "predict_s": statistics.median(walls),
        "predict_peak_mb": statistics.median(memories),
        "default_s": statistics.median(defaults),
        "torch_imported": imported,
    }


def main() -> None:
    """Print the table (this checkout, and --before where given) with the ratios."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--before", type=Path, help="another checkout's src folder (the baseline)")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    image = sorted((HERE / "srcrn" / "sample" / "images").glob("*.jpg"))[0]
    rows = [("before", args.before)] if args.before else []
    rows.append(("now", HERE))
    results = {name: measure(src, image, args.repeats) for name, src in rows}
    print(
        f"machine: {os.cpu_count()} CPUs, python {sys.version.split()[0]}, {args.repeats} runs each (median), {image.name}"
    )
    print("| srcrn | `srcrn predict one.jpg` wall (s) | peak RSS (MB) | `Pipeline.default()` (s) | torch imported |")
    print("|---|---|---|---|---|")
    for name, r in results.items():
        print(
            f"| {name} | {r['predict_s']:.2f} | {r['predict_peak_mb']:.0f} | {r['default_s']:.2f} | {r['torch_imported']} |"
        )
    if args.before:
        b, n = results["before"], results["now"]
        print(
            f"ratios before/now: predict {b['predict_s'] / n['predict_s']:.2f}x, memory "
            f"{b['predict_peak_mb'] / n['predict_peak_mb']:.2f}x, Pipeline.default() {b['default_s'] / n['default_s']:.2f}x"
        )


if __name__ == "__main__":
    main()
