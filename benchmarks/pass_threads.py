"""Threads per ONNX Runtime pass: one pass on every core, or one single-thread pass per core.

    python -m benchmarks.pass_threads [--model models/pbc-8class] [--batches 40] [--rounds 3]

`runtime.THREADS_PER_PASS` and `MODEL_WORK_SLOTS` decide how the served process uses its
cores. Side by side in one process, on the same random inputs of the model's size (a pass costs
the same whatever the pixels), alternating over rounds since this shared machine is noisy:
- throughput: `--batches` passes of `runtime.PASS_INPUTS` images, one after another on a session
  with a thread per core, against the same passes on a one-thread session called from one
  thread per core at once (what the server does with a slot per core);
- latency: one image on each session, alone.
Printed: the medians over rounds, and the ratio.
"""

from __future__ import annotations

import argparse
import os
import statistics
import threading
import time
from pathlib import Path

import numpy as np


def session(model_file: Path, threads: int):
    """A session as `runtime.OnnxModel` makes it, with `threads` intra-op threads."""
    import onnxruntime

    from hematovision_core.runtime import session_options

    return onnxruntime.InferenceSession(str(model_file), session_options(threads),
                                        providers=["CPUExecutionProvider"])


def images_per_second(run, batch: np.ndarray, passes: int, callers: int) -> float:
    """`passes` passes of `batch`, shared among `callers` threads at once."""
    def work(count: int) -> None:
        for _ in range(count):
            run(batch)

    shares = [passes // callers + (i < passes % callers) for i in range(callers)]
    threads = [threading.Thread(target=work, args=(share,)) for share in shares]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return passes * len(batch) / (time.perf_counter() - started)


def one_image_ms(run, image: np.ndarray, repeats: int = 30) -> float:
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        run(image)
        times.append(time.perf_counter() - started)
    return 1000 * statistics.median(times)


def main(argv: list[str] | None = None) -> int:
    from hematovision_core.model_io import RUNTIME_FILE
    from hematovision_core.runtime import PASS_INPUTS, cpu_count

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=Path("models/pbc-8class"))
    parser.add_argument("--batches", type=int, default=40, help="passes per throughput round")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args(argv)
    cores = cpu_count()
    sessions = {"one pass on every core": session(args.model / RUNTIME_FILE, cores),
                "one-thread passes, one per core": session(args.model / RUNTIME_FILE, 1)}
    name = next(iter(sessions.values())).get_inputs()[0].name
    size = int(next(iter(sessions.values())).get_inputs()[0].shape[1])
    batch = np.random.default_rng(0).uniform(-1, 1, (PASS_INPUTS, size, size, 3))
    batch = batch.astype(np.float32)
    runs = {label: (lambda x, s=s: s.run(None, {name: x})) for label, s in sessions.items()}
    for run in runs.values():
        run(batch)  # set-up and arena outside the timing
    callers = {"one pass on every core": 1, "one-thread passes, one per core": cores}
    rates = {label: [] for label in runs}
    latency = {label: [] for label in runs}
    for _ in range(args.rounds):
        for label, run in runs.items():
            rates[label].append(images_per_second(run, batch, args.batches, callers[label]))
            latency[label].append(one_image_ms(run, batch[:1]))
    print(f"{args.model.name}, {cores} cores, passes of {PASS_INPUTS}, load average "
          f"{os.getloadavg()[0]:.1f} after; medians of {args.rounds} alternating rounds")
    for label in runs:
        print(f"  {label:<34} {statistics.median(rates[label]):7.1f} images/s   one image "
              f"{statistics.median(latency[label]):5.1f} ms   (rounds: "
              f"{', '.join(f'{r:.0f}' for r in rates[label])} images/s)")
    first, second = (statistics.median(rates[label]) for label in runs)
    print(f"  throughput ratio (one per core / every core): {second / first:.2f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
