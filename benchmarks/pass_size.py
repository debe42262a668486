"""How many images one ONNX Runtime pass should carry: throughput against memory kept.

    python -m benchmarks.pass_size [--model models/pbc-8class] [--sizes 1,4,8,16,32] [--rounds 2]

ONNX Runtime's CPU arena grows to the largest pass a session has run and never gives that
memory back, so the served pass size (`runtime.PASS_INPUTS`) sets how much a server keeps after
a lecture. Each size runs in a fresh interpreter (an arena belongs to its session), on random
inputs of the model's size: a warm pass, then enough timed passes for about 96 images. Printed:
images/s (median of the timed passes) and the process's RSS after them and a `malloc_trim`.
Sizes are interleaved over rounds, since this shared machine is noisy in bursts.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

CHILD = r"""
import ctypes, json, statistics, sys, time
import numpy as np
from hematovision_core.runtime import OnnxModel
size, folder = int(sys.argv[1]), sys.argv[2]
model = OnnxModel.load(folder)
outputs = list(model.OUTPUTS)
batch = np.random.default_rng(0).uniform(-1, 1, (size, model.input_size, model.input_size, 3))
batch = batch.astype(np.float32)
model.session.run(outputs, {model.input_name: batch})  # the session directly: no splitting
times = []
for _ in range(max(4, 96 // size)):
    started = time.perf_counter()
    model.session.run(outputs, {model.input_name: batch})
    times.append(time.perf_counter() - started)
ctypes.CDLL("libc.so.6").malloc_trim(0)
pages = int(open("/proc/self/statm").read().split()[1])
print(json.dumps({"size": size, "images_per_s": size / statistics.median(times),
                  "rss_mib": pages * 4096 / 2**20}))
"""


def measure(model: Path, size: int) -> dict:
    done = subprocess.run([sys.executable, "-c", CHILD, str(size), str(model)], check=True,
                          capture_output=True, text=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=Path("models/pbc-8class"))
    parser.add_argument("--sizes", default="1,4,8,16,32", help="images per pass, comma-separated")
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args(argv)
    sizes = [int(size) for size in args.sizes.split(",")]
    results: dict[int, list[dict]] = {size: [] for size in sizes}
    for _ in range(args.rounds):
        for size in sizes:
            results[size].append(measure(args.model, size))
    print(f"{args.model.name}: images per pass -> images/s (each round), RSS after (MiB)")
    for size in sizes:
        rates = ", ".join(f"{run['images_per_s']:.0f}" for run in results[size])
        print(f"  {size:3d}: {rates} images/s; {max(r['rss_mib'] for r in results[size]):.0f} MiB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
