"""Speed benchmarks: figures printed, not asserted (timings belong here, not in tests).

    python -m benchmarks.engine [--model models/pbc-8class] [--app] [--explorer]

Core (always): model load time, single-image classification latency p50/p95 after warm-up (the
forward pass alone, and end to end from JPEG bytes), batch-32 throughput.
Targets on the 2-core CPU: p50 <= 25 ms, batch throughput >= 80 images/s.
`--app` adds the dashboard figures, `--explorer` the dataset explorer's.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

from hematovision_core.config import Settings


def _sample_jpegs(data_dir: Path, count: int) -> list[bytes]:
    """Real JPEG bytes from the data folder if there are any, else synthetic images."""
    paths = sorted(Path(data_dir).rglob("*.jpg")) if Path(data_dir).is_dir() else []
    if paths:  # spread over the classes: every k-th file of the sorted list
        return [p.read_bytes() for p in paths[:: max(1, len(paths) // count)][:count]]
    from PIL import Image

    rng = np.random.default_rng(0)
    out = []
    for _ in range(count):
        buffer = io.BytesIO()
        Image.fromarray(rng.integers(0, 255, (256, 256, 3), dtype=np.uint8)).save(buffer, "JPEG")
        out.append(buffer.getvalue())
    return out


def _percentiles(seconds: list[float]) -> dict[str, float]:
    ms = np.array(seconds) * 1000
    return {"p50_ms": round(float(np.percentile(ms, 50)), 2),
            "p95_ms": round(float(np.percentile(ms, 95)), 2)}


def run_core_benchmarks(model_folder: Path, data_dir: Path, repeats: int = 100) -> dict:
    from hematovision_core.predict import Classifier

    tick = time.perf_counter()
    classifier = Classifier.load(model_folder)
    load_s = time.perf_counter() - tick
    tick = time.perf_counter()
    classifier.warm_up()
    warm_up_s = time.perf_counter() - tick

    jpegs = _sample_jpegs(data_dir, 32)
    arrays = np.stack([classifier.prepare(b) for b in jpegs])
    for _ in range(5):  # warm-up: first calls trace and allocate
        classifier.probabilities(arrays[:1])
        classifier.classify([jpegs[0]])
    forward, end_to_end = [], []
    for i in range(repeats):
        tick = time.perf_counter()
        classifier.probabilities(arrays[i % len(arrays)][None])
        forward.append(time.perf_counter() - tick)
        tick = time.perf_counter()
        classifier.classify([jpegs[i % len(jpegs)]])
        end_to_end.append(time.perf_counter() - tick)
    classifier.probabilities(arrays)
    batch_times = []
    for _ in range(5):
        tick = time.perf_counter()
        classifier.probabilities(arrays)
        batch_times.append(time.perf_counter() - tick)
    tick = time.perf_counter()
    classifier.classify(jpegs)
    batch_end_to_end = time.perf_counter() - tick
    return {
        "model": str(model_folder),
        "model_load_s": round(load_s, 2),
        "warm_up_s": round(warm_up_s, 2),
        "single_image_forward": _percentiles(forward),
        "single_image_end_to_end_from_jpeg": _percentiles(end_to_end),
        "batch32_images_per_s": round(len(arrays) / float(np.median(batch_times)), 1),
        "batch32_end_to_end_images_per_s": round(len(jpegs) / batch_end_to_end, 1),
        "cpu_count": os.cpu_count(),
    }


def main(argv=None) -> int:
    settings = Settings.from_env()
    parser = argparse.ArgumentParser(prog="python -m benchmarks.engine", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, default=settings.models_dir / "pbc-8class")
    parser.add_argument("--data", type=Path, default=settings.data_dir / "pbc",
                        help="images to time on (default $HEMATOVISION_DATA/pbc)")
    parser.add_argument("--repeats", type=int, default=100)
    parser.add_argument("--app", action="store_true", help="also time the dashboard (Classify)")
    parser.add_argument("--explorer", action="store_true", help="also time the dataset explorer")
    parser.add_argument("--json", type=Path, help="write all figures here as JSON")
    args = parser.parse_args(argv)

    results = {"core": run_core_benchmarks(args.model, args.data, args.repeats)}
    print(json.dumps(results["core"], indent=2))
    if args.app:
        from benchmarks.app import run_app_benchmarks

        results["app"] = run_app_benchmarks(args.model.parent, model_name=args.model.name)
    if args.explorer:
        from benchmarks.explorer import run_explorer_benchmarks

        results["explorer"] = run_explorer_benchmarks(args.model.parent, settings.data_dir,
                                                      model_name=args.model.name)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
