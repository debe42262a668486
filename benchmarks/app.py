"""Dashboard speed: classification plus the last-block heatmap for one image, and the Classify
page's renders.

    python -m benchmarks.engine --app        (or python -m benchmarks.app)

Targets on the 2-core CPU: classification + heatmap at most 1.2x classification alone (the map
comes from the same forward pass); the first render of Classify in a fresh process (model load
included) <= 10 s; an opacity-only rerun runs no forward pass. The page itself is timed in a
child process (`benchmarks/classify_page.py`), so this module never imports streamlit.
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
TARGETS = {"heatmap_cost_ratio": 1.2, "classify_first_render_s": 10}


def _model_folder(models_dir: Path, model_name: str | None = None) -> Path:
    """The model folder named, else pbc-8class, else the first valid one."""
    from hematovision_core.model_io import list_model_folders

    folders = list_model_folders(models_dir)
    if model_name is not None:
        named = [folder for folder in folders if folder.name == model_name]
        if not named:
            raise ValueError(f"No valid model folder {model_name!r} in {models_dir}")
        return named[0]
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


def time_classify_and_heatmap(model_folder: Path, image: Path, repeats: int = 30) -> dict:
    """p50/p95 of JPEG bytes -> prediction, and of JPEG bytes -> prediction + last-block heatmap
    (as the Classify page does it), interleaved, warm."""
    from hematovision_core.batch import classify_files
    from hematovision_core.predict import Classifier

    classifier = Classifier.load(model_folder)
    classifier.warm_up()
    data = Path(image).read_bytes()

    def classify_only():
        classifier.classify([data])

    def classify_and_explain():
        result = classify_files(classifier, [(image.name, data)])[0][0]
        classifier.heatmap(result.class_maps, result.prediction.class_index)

    timings = {"classify": [], "classify_plus_heatmap": []}
    for _ in range(3):  # warm-up: buffers, caches
        classify_only(), classify_and_explain()
    for _ in range(repeats):
        for name, run in (("classify", classify_only), ("classify_plus_heatmap",
                                                         classify_and_explain)):
            tick = time.perf_counter()
            run()
            timings[name].append(time.perf_counter() - tick)

    def ms(values, q):
        return round(float(np.percentile(np.array(values) * 1000, q)), 1)

    return {"classify_p50_ms": ms(timings["classify"], 50),
            "classify_p95_ms": ms(timings["classify"], 95),
            "classify_plus_heatmap_p50_ms": ms(timings["classify_plus_heatmap"], 50),
            "classify_plus_heatmap_p95_ms": ms(timings["classify_plus_heatmap"], 95),
            "heatmap_cost_ratio": round(float(np.median(timings["classify_plus_heatmap"])
                                              / np.median(timings["classify"])), 2),
            "repeats": repeats}


def time_classify_page(models_dir: Path, model_name: str, image: Path) -> dict:
    """First render, upload rerun and opacity-only rerun of Classify, in a fresh interpreter."""
    env = {**os.environ, "HEMATOVISION_MODELS": str(models_dir)}
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    completed = subprocess.run(
        [sys.executable, str(REPO_ROOT / "benchmarks" / "classify_page.py"), str(image),
         model_name],
        cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=900,
    )
    if completed.returncode != 0:
        raise RuntimeError(f"classify_page.py failed:\n{completed.stderr[-2000:]}")
    return json.loads(completed.stdout.strip().splitlines()[-1])


def run_app_benchmarks(models_dir, data_dir=None, model_name: str | None = None) -> dict:
    """All dashboard figures as a dict (also printed), with the targets they are held to, for
    the model folder `model_name` (default: pbc-8class, else the first valid one)."""
    models_dir = Path(models_dir)
    data_dir = Path(data_dir) if data_dir else Settings.from_env().data_dir
    if not data_dir.is_dir() and (REPO_ROOT.parent / "shared" / "data").is_dir():
        data_dir = REPO_ROOT.parent / "shared" / "data"
    folder = _model_folder(models_dir, model_name)
    image = _sample_image(data_dir)
    results = {"model": folder.name, "image": image.name, "cpu_count": os.cpu_count(),
               **time_classify_and_heatmap(folder, image),
               **time_classify_page(models_dir, folder.name, image)}
    results["targets"] = TARGETS
    results["meets_targets"] = {
        "heatmap_cost_ratio": results["heatmap_cost_ratio"] <= TARGETS["heatmap_cost_ratio"],
        "classify_first_render": results["classify_first_render_from_process_start_s"]
        <= TARGETS["classify_first_render_s"],
        "opacity_rerun_without_recompute": not results["opacity_change_reran_the_model"],
    }
    print(json.dumps(results, indent=2))
    return results


if __name__ == "__main__":
    run_app_benchmarks(Settings.from_env().models_dir)
