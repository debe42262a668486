"""Work a page run must not repeat: computed once per version of its files (`app_cache`), and a
second Quiz or Explorer run scans, parses and hashes nothing."""

from __future__ import annotations

import hashlib
import threading
from pathlib import Path

import pytest
from PIL import Image
from streamlit.testing.v1 import AppTest

import app_cache

REPO_ROOT = Path(__file__).resolve().parent.parent


def test_once_computes_once_per_key_even_from_many_threads():
    calls = []
    barrier = threading.Barrier(8)

    def compute():
        calls.append(1)
        return object()

    def ask(results):
        barrier.wait()
        results.append(app_cache.once("test-once", "key", compute))

    results: list = []
    threads = [threading.Thread(target=ask, args=(results,)) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(calls) == 1 and len({id(r) for r in results}) == 1


def test_a_failure_is_not_cached():
    attempts = []

    def flaky():
        attempts.append(1)
        if len(attempts) == 1:
            raise OSError("not yet")
        return "fine"

    with pytest.raises(OSError):
        app_cache.once("test-flaky", "key", flaky)
    assert app_cache.once("test-flaky", "key", flaky) == "fine"


def test_folder_stamp_changes_when_an_image_is_added_or_removed(tmp_path):
    for layout in ("pbc/neutrophil", "cells/TRAIN/MONOCYTE"):
        folder = tmp_path / layout
        folder.mkdir(parents=True)
        Image.new("RGB", (40, 40)).save(folder / "a.png")
    before = app_cache.folder_stamp(tmp_path, depth=3)
    assert app_cache.folder_stamp(tmp_path, depth=3) == before
    Image.new("RGB", (40, 40)).save(tmp_path / "cells/TRAIN/MONOCYTE/b.png")
    added = app_cache.folder_stamp(tmp_path, depth=3)
    assert added != before
    (tmp_path / "pbc/neutrophil/a.png").unlink()
    assert app_cache.folder_stamp(tmp_path, depth=3) != added


def test_folder_stamp_does_not_list_class_folders(tmp_path, monkeypatch):
    """A class folder of thousands of images is stamped by its own mtime, never listed."""
    for label in ("basophil", "eosinophil"):
        (tmp_path / "pbc" / label).mkdir(parents=True)
    listed = []
    scandir = app_cache.os.scandir
    monkeypatch.setattr(app_cache.os, "scandir",
                        lambda path: listed.append(Path(path).name) or scandir(path))
    app_cache.folder_stamp(tmp_path, depth=3)
    assert "basophil" not in listed and "eosinophil" not in listed


@pytest.fixture
def counted(monkeypatch):
    """Counts of the expensive calls a page run could make: listing dataset folders, reading a
    split manifest, building a question pool, hashing a file."""
    from hematovision_core import data, explorer, model_io, quiz_pool

    counts = {"list_datasets": 0, "read_manifest": 0, "manifest_pool": 0, "list_images": 0,
              "sha256": 0}

    def counting(module, name, key=None):
        original = getattr(module, name)

        def wrapper(*args, **kwargs):
            counts[key or name] += 1
            return original(*args, **kwargs)

        monkeypatch.setattr(module, name, wrapper)

    counting(explorer, "list_datasets")
    counting(explorer, "list_images")
    counting(data, "read_manifest")
    counting(quiz_pool, "read_manifest")
    counting(quiz_pool, "manifest_pool")
    sha256 = hashlib.sha256  # model files are hashed through model_io.hashlib
    monkeypatch.setattr(model_io, "hashlib", type("CountingHashlib", (), {"sha256": staticmethod(
        lambda *args: counts.__setitem__("sha256", counts["sha256"] + 1) or sha256(*args))}))
    return counts


@pytest.mark.parametrize("page", ["pages/2_Quiz.py", "pages/3_Dataset_Explorer.py", "Home.py"])
def test_a_second_page_run_scans_parses_and_hashes_nothing(page, counted, monkeypatch,
                                                           owning_model_folder, small_data,
                                                           tmp_path):
    monkeypatch.setenv("HEMATOVISION_MODELS", str(owning_model_folder.parent))
    monkeypatch.setenv("HEMATOVISION_DATA", str(small_data))
    monkeypatch.setenv("HEMATOVISION_VAR", str(tmp_path / "var"))
    at = AppTest.from_file(str(REPO_ROOT / page), default_timeout=120).run()
    assert not at.exception, [e.value for e in at.exception]
    first = dict(counted)
    at.run()
    assert not at.exception
    assert counted == first, f"the second run repeated work: {first} -> {counted}"


def test_the_servers_warm_up_builds_the_quiz_pool_the_first_quiz_run_needs(
        counted, monkeypatch, owning_model_folder, small_data, tmp_path):
    """A lecture hall's first Quiz runs find the pool built: serve.py's warm-up made it."""
    import app_support
    from hematovision_core import explain_pool

    monkeypatch.setenv("HEMATOVISION_MODELS", str(owning_model_folder.parent))
    monkeypatch.setenv("HEMATOVISION_DATA", str(small_data))
    monkeypatch.setenv("HEMATOVISION_VAR", str(tmp_path / "var"))
    monkeypatch.setattr(explain_pool, "start", lambda folders: None)  # no TensorFlow workers
    app_cache.clear()
    assert app_support.warm_up_server(app_support.get_settings()) == [owning_model_folder.name]
    assert counted["manifest_pool"] == 1
    at = AppTest.from_file(str(REPO_ROOT / "pages/2_Quiz.py"), default_timeout=120).run()
    assert not at.exception, [e.value for e in at.exception]
    assert counted["manifest_pool"] == 1  # the page's first run built no pool of its own
