"""The explorer's first pass over PBC images, ONNX Runtime against TensorFlow, side by side.

    HEMATOVISION_DATA=../shared/data python -m benchmarks.explorer_pass [--model models/pbc-8class]
        [--images 1600] [--rounds 2]

The lecture-hall issue sets the explorer's first pass at 2.5x TensorFlow's images/s. A figure
from another day is no baseline on this shared machine, so both run here, in one process, on
the same images, alternating over --rounds (ONNX Runtime first in odd rounds, TensorFlow first
in even ones), after one untimed read of every file (the page cache is warm for both):

- served: `split_predictions.run_model`, the explorer's own call (decoding in DECODE_THREADS
  threads while the model runs, logits, pooled features and out-of-domain scores);
- TensorFlow: the same decoding, the same batches, and the Keras model's logits in a
  `tf.function` (`KerasClassifier`), as the explorer computed them before the ONNX export.

Printed: images/s per round, the medians, their ratio, and CPU seconds per image.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np

from benchmarks.explorer import cpu_seconds
from hematovision_core.config import Settings
from hematovision_core.explorer import list_images
from hematovision_core.predict import Classifier
from hematovision_core.preprocessing import scale_pixels
from hematovision_core.split_predictions import BATCH_SIZE, DECODE_THREADS, run_model

TARGET_RATIO = 2.5


def strided_sample(root: Path, count: int) -> list[Path]:
    """`count` images spread evenly over the sorted listing (so over every class)."""
    relative, _, _ = list_images(root)
    step = max(1, len(relative) // count)
    return [root / path for path in relative[::step][:count]]


def tensorflow_pass(classifier: Classifier, keras_classifier, paths: list[Path]) -> int:
    """The explorer's pass with TensorFlow's forward pass; returns the images classified."""
    done = 0
    per_pass = max(1, BATCH_SIZE // classifier.views)
    for _, decoded in classifier._decoded_batches(paths, per_pass, None, True, DECODE_THREADS):
        pixels = [item[1] for item in decoded if item[2] is None]
        if pixels:
            keras_classifier.logits(scale_pixels(np.stack(pixels)), BATCH_SIZE)
            done += len(pixels)
    return done


def timed(run) -> tuple[float, float, int]:
    """(seconds, CPU seconds, images) of one pass."""
    started, cpu_started = time.perf_counter(), cpu_seconds()
    images = run()
    return time.perf_counter() - started, cpu_seconds() - cpu_started, images


def main(argv: list[str] | None = None) -> int:
    settings = Settings.from_env()
    parser = argparse.ArgumentParser(prog="python -m benchmarks.explorer_pass",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=settings.models_dir / "pbc-8class")
    parser.add_argument("--data", type=Path, default=settings.data_dir / "pbc")
    parser.add_argument("--images", type=int, default=1600)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args(argv)

    # TensorFlow is imported here, in the benchmark, never in the served process.
    from hematovision_core.keras_model import KerasClassifier

    paths = strided_sample(args.data, args.images)
    for path in paths:  # one untimed read: both runtimes find the files in the page cache
        path.read_bytes()
    classifier = Classifier.load(args.model)
    classifier.warm_up()
    keras_classifier = KerasClassifier.load(args.model)
    keras_classifier.logits(np.zeros((BATCH_SIZE, classifier.input_size,
                                      classifier.input_size, 3), np.float32))  # trace it
    runs = {
        "ONNX Runtime": lambda: len(run_model(classifier, paths)[2]),
        "TensorFlow": lambda: tensorflow_pass(classifier, keras_classifier, paths),
    }
    rates: dict[str, list[float]] = {name: [] for name in runs}
    cpu_per_image: dict[str, list[float]] = {name: [] for name in runs}
    print(f"{args.model.name}: {len(paths)} images of {args.data}, batches of {BATCH_SIZE}, "
          f"{DECODE_THREADS} decoding threads, {len(os.sched_getaffinity(0))} cores; "
          f"load average {os.getloadavg()[0]:.2f} before")
    for round_number in range(args.rounds):
        order = list(runs) if round_number % 2 == 0 else list(reversed(runs))
        for name in order:
            seconds, cpu, images = timed(runs[name])
            rates[name].append(images / seconds)
            cpu_per_image[name].append(1000 * cpu / images)
            print(f"  round {round_number + 1}, {name}: {images} images in {seconds:.1f} s, "
                  f"{images / seconds:.1f} images/s, {1000 * cpu / images:.1f} CPU-ms an image")
    served, baseline = (statistics.median(rates[name]) for name in runs)
    print(f"median: ONNX Runtime {served:.1f} images/s, TensorFlow {baseline:.1f} images/s: "
          f"{served / baseline:.2f}x (target >= {TARGET_RATIO}x); CPU-ms an image "
          f"{statistics.median(cpu_per_image['ONNX Runtime']):.1f} against "
          f"{statistics.median(cpu_per_image['TensorFlow']):.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
