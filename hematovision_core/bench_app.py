"""Dashboard speed: classification plus Grad-CAM for one image, and the Classify page's renders.

    python -m hematovision_core.bench --app        (or python -m hematovision_core.bench_app)

Targets on the 2-core CPU: classification + Grad-CAM p50 <= 80 ms after warm-up; the first
render of Classify in a fresh process (model load included) <= 10 s; an opacity-only rerun
computes no heatmap. The page itself is timed in a child process (`app_bench.py`, beside
Home.py), so this module never imports streamlit.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from hematovision_core.config import REPO_ROOT, Settings

DEFAULT_MODEL = "pbc-8class"
TARGETS = {"classify_plus_gradcam_p50_ms": 80, "classify_first_render_s": 10}


def _model_folder(models_dir: Path) -> Path:
    from hematovision_core.model_io import list_model_folders

    folders = list_model_folders(models_dir)
    if not folders:
        raise ValueError(f"No valid model folder in {models_dir}")
    return next((f for f in folders if f.name == DEFAULT_MODEL), folders[0])


def _sample_image(data_dir: Path) -> Path:
    """A real single-cell JPEG if the data folder has one, else a synthetic one in a temp file."""
    data_dir = Path(data_dir)
    for pattern in ("pbc/neutrophil/*.jpg", "**/*.jpg"):
        found = sorted(data_dir.glob(pattern)) if data_dir.is_dir() else []
        if found:
            return found[0]
    from PIL import Image

    path = Path(tempfile.mkdtemp()) / "synthetic.jpg"
    pixels = np.random.default_rng(0).integers(0, 255, (256, 256, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(path)
    return path


def time_classify_and_gradcam(model_folder: Path, image: Path, repeats: int = 30) -> dict:
    """p50/p95 of JPEG bytes -> prediction -> Grad-CAM (last layer) for one image, warm."""
    from hematovision_core import gradcam
    from hematovision_core.predict import Classifier

    classifier = Classifier.load(model_folder)
    classifier.warm_up()
    data = Path(image).read_bytes()
    for _ in range(3):  # warm-up: trace the compiled Grad-CAM, allocate buffers
        pixels = classifier.prepare(data)
        prediction = classifier.classify_arrays(pixels[None])[0]
        gradcam.compute_heatmap(classifier, pixels, prediction.class_index)
    total, classify, explain = [], [], []
    for _ in range(repeats):
        tick = time.perf_counter()
        pixels = classifier.prepare(data)
        prediction = classifier.classify_arrays(pixels[None])[0]
        middle = time.perf_counter()
        gradcam.compute_heatmap(classifier, pixels, prediction.class_index)
        end = time.perf_counter()
        total.append(end - tick)
        classify.append(middle - tick)
        explain.append(end - middle)

    def ms(values, q):
        return round(float(np.percentile(np.array(values) * 1000, q)), 1)

    return {"classify_plus_gradcam_p50_ms": ms(total, 50),
            "classify_plus_gradcam_p95_ms": ms(total, 95),
            "classify_p50_ms": ms(classify, 50), "gradcam_p50_ms": ms(explain, 50),
            "repeats": repeats}


def time_classify_page(models_dir: Path, model_name: str, image: Path) -> dict:
    """First render, upload rerun and opacity-only rerun of Classify, in a fresh interpreter."""
    env = {**os.environ, "HEMATOVISION_MODELS": str(models_dir)}
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    completed = subprocess.run(
        [sys.executable, str(REPO_ROOT / "app_bench.py"), str(image), model_name],
        cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=900,
    )
    if completed.returncode != 0:
        raise RuntimeError(f"app_bench.py failed:\n{completed.stderr[-2000:]}")
    return json.loads(completed.stdout.strip().splitlines()[-1])


def run_app_benchmarks(models_dir, data_dir=None) -> dict:
    """All dashboard figures as a dict (also printed), with the targets they are held to."""
    models_dir = Path(models_dir)
    data_dir = Path(data_dir) if data_dir else Settings.from_env().data_dir
    if not data_dir.is_dir() and (REPO_ROOT.parent / "shared" / "data").is_dir():
        data_dir = REPO_ROOT.parent / "shared" / "data"
    folder = _model_folder(models_dir)
    image = _sample_image(data_dir)
    results = {"model": folder.name, "image": image.name, "cpu_count": os.cpu_count(),
               **time_classify_and_gradcam(folder, image),
               **time_classify_page(models_dir, folder.name, image)}
    results["targets"] = TARGETS
    results["meets_targets"] = {
        "classify_plus_gradcam_p50": results["classify_plus_gradcam_p50_ms"]
        <= TARGETS["classify_plus_gradcam_p50_ms"],
        "classify_first_render": results["classify_first_render_from_process_start_s"]
        <= TARGETS["classify_first_render_s"],
        "opacity_rerun_without_recompute": not results["opacity_change_recomputed_heatmap"],
    }
    print(json.dumps(results, indent=2))
    return results


if __name__ == "__main__":
    run_app_benchmarks(Settings.from_env().models_dir)
