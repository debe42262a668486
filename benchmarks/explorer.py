"""Benchmarks of the dataset explorer: first computation of a split, page runs from cache, memory.

    python -m benchmarks.explorer [--models models] [--data data] [--limit N]

`--limit N` times a class-stratified subset of N images (a folder of symlinks in a temporary
directory) instead of the whole PBC folder. Every cache is written to a temporary folder, so the
first computation really is the first.
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

PAGE = Path(__file__).resolve().parent.parent / "pages" / "3_Dataset_Explorer.py"
DATASET = "pbc"
PREFERRED_MODEL = "pbc-8class"
TABS = ("Browse", "Where the model errs", "Map")


def peak_rss_mb() -> float:
    """Peak resident memory of this process so far, in MiB (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def cpu_seconds() -> float:
    """User plus system CPU time of this process so far (all threads)."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def pick_model(models_dir: Path, model_name: str | None = None) -> Path:
    """The model named (`--model`), else pbc-8class if present, else the first valid model
    folder trained on the PBC folder."""
    from hematovision_core.model_io import ModelFolder, list_model_folders

    folders = list_model_folders(models_dir)
    if model_name is not None:
        named = [folder for folder in folders if folder.name == model_name]
        if not named:
            raise ValueError(f"No valid model folder {model_name!r} in {models_dir}")
        return named[0]
    for folder in folders:
        if folder.name == PREFERRED_MODEL:
            return folder
    for folder in folders:
        if ModelFolder.read(folder).dataset == DATASET:
            return folder
    raise ValueError(f"No model trained on the {DATASET} folder in {models_dir}")


def subset_folder(data_dir: Path, limit: int, target: Path) -> Path:
    """`target/pbc/<class>/` with symlinks to `limit` images, the same share from each class."""
    from hematovision_core.explorer import list_images

    root = Path(data_dir) / DATASET
    paths, _, _ = list_images(root)
    step = max(1, len(paths) // limit)
    for relative in paths[::step][:limit]:
        link = target / DATASET / relative
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to((root / relative).resolve())
    return target


@contextmanager
def environment(**values: str):
    saved = {key: os.environ.get(key) for key in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def time_tabs(app, label: str = "") -> dict:
    """Seconds of a page run per tab: each tab is run twice, and the second (cached) run kept."""
    timings = {}
    for tab in TABS:
        app.session_state["explorer_tab"] = tab
        app.run()  # first visit of the tab: thumbnails and heatmaps are made here
        started = time.perf_counter()
        app.run()
        timings[f"cached_run_s{label}[{tab}]"] = round(time.perf_counter() - started, 2)
    timings[f"cached_run_s{label}_max"] = max(timings.values())
    return timings


def time_page_runs(models_dir: Path, data_dir: Path, var_dir: Path,
                   model_name: str | None = None) -> dict:
    """AppTest runs of the explorer page (with `model_name` chosen in the sidebar, when given):
    the first (it loads the model), then every tab from cache."""
    from streamlit.testing.v1 import AppTest

    timings = {}
    with environment(HEMATOVISION_MODELS=str(models_dir), HEMATOVISION_DATA=str(data_dir),
                     HEMATOVISION_VAR=str(var_dir)):
        app = AppTest.from_file(str(PAGE), default_timeout=600)
        app.session_state["explorer_split"] = "all"
        if model_name:
            app.session_state["chosen_model"] = model_name  # app_support.CHOSEN_MODEL
        started = time.perf_counter()
        app.run()
        timings["first_run_s"] = round(time.perf_counter() - started, 2)
        if app.exception:
            raise RuntimeError(f"The explorer page failed: {app.exception[0].value}")
        timings.update(time_tabs(app))
    return timings


def run_explorer_benchmarks(models_dir, data_dir, limit: int | None = None,
                            model_name: str | None = None) -> dict:
    """Time the first computation of predictions and features on the PBC folder, the explorer's
    page runs from cache, and the process's peak memory; print and return the figures.
    `model_name`: the model folder to time (default: `pick_model`'s choice)."""
    from hematovision_core.explorer import ALL, split_source
    from hematovision_core.predict import Classifier
    from hematovision_core.split_predictions import compute

    models_dir, data_dir = Path(models_dir), Path(data_dir)
    folder = pick_model(models_dir, model_name)
    classifier = Classifier.load(folder)
    results: dict = {"model": folder.name, "cpu_count": os.cpu_count()}
    with tempfile.TemporaryDirectory(prefix="explorer-bench-") as scratch:
        scratch = Path(scratch)
        if limit:
            data_dir = subset_folder(data_dir, limit, scratch / "data")
        source = split_source(data_dir, classifier, DATASET, ALL)
        results["images"] = len(source.paths)
        results["subset"] = f"--limit {limit}" if limit else "whole folder"
        started, cpu_started = time.perf_counter(), cpu_seconds()
        predictions = compute(scratch / "var" / "cache", classifier, source)
        seconds, cpu_used = time.perf_counter() - started, cpu_seconds() - cpu_started
        results["first_compute_s"] = round(seconds, 1)
        results["images_per_s"] = round(len(predictions.paths) / seconds, 1)
        # On a shared machine wall time depends on the neighbours; CPU time does not. Images per
        # CPU-second times the cores is what this split would reach on that many idle cores.
        results["compute_cpu_s"] = round(cpu_used, 1)
        results["images_per_cpu_s"] = round(len(predictions.paths) / cpu_used, 1)
        results["load_average_1min"] = round(os.getloadavg()[0], 2)
        results["peak_rss_mb_after_compute"] = round(peak_rss_mb())
        results.update(time_page_runs(models_dir, data_dir, scratch / "var", folder.name))
    results["peak_rss_mb"] = round(peak_rss_mb())
    print(f"explorer: first predictions + features, {results['images']} PBC images "
          f"({results['subset']}, model {results['model']}, {results['cpu_count']} CPUs): "
          f"{results['first_compute_s']} s, {results['images_per_s']} images/s (target >= 212, 2.5x the 85 of TensorFlow); "
          f"{results['compute_cpu_s']} CPU-s, {results['images_per_cpu_s']} images per CPU-s "
          f"(x{results['cpu_count']} CPUs if idle; load average {results['load_average_1min']})")
    print(f"explorer: page run from cache: max {results['cached_run_s_max']} s over the tabs "
          f"(target <= 1 s); first run with model loading {results['first_run_s']} s")
    for tab in TABS:
        print(f"  {tab}: {results[f'cached_run_s[{tab}]']} s")
    print(f"explorer: peak RSS {results['peak_rss_mb']} MiB "
          f"({results['peak_rss_mb_after_compute']} MiB after the computation; target < 2048)")
    return results


def main(argv: list[str] | None = None) -> int:
    from hematovision_core.config import Settings

    settings = Settings.from_env()
    parser = argparse.ArgumentParser(prog="python -m benchmarks.explorer",
                                     description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", type=Path, default=settings.models_dir)
    parser.add_argument("--model", help="name of the model folder to time (default pbc-8class)")
    parser.add_argument("--data", type=Path, default=settings.data_dir)
    parser.add_argument("--limit", type=int, default=None,
                        help="time this many images instead of the whole PBC folder")
    args = parser.parse_args(argv)
    run_explorer_benchmarks(args.models, args.data, args.limit, args.model)
    return 0


if __name__ == "__main__":
    sys.exit(main())
