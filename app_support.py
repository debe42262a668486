"""Streamlit glue shared by every page: settings, cached models, the sidebar, common notices.

The only place (with the pages) that imports streamlit; `hematovision_core` stays cache-agnostic.
"""

from __future__ import annotations

import gc
import re
import threading
from pathlib import Path

import streamlit as st

from hematovision_core import DISCLAIMER
from hematovision_core.config import Settings
from hematovision_core.model_io import list_model_folders, read_metadata

DEFAULT_MODEL = "pbc-8class"
LOGO = Path(__file__).resolve().parent / "assets" / "logo.svg"


def get_settings() -> Settings:
    """Settings from the environment, read on each run (cheap), so tests can change them."""
    return Settings.from_env()


@st.cache_resource(show_spinner="Loading the model (once per server)...")
def load_classifier(folder: str):
    """Load and warm up a model once per process; every session and page shares it."""
    from hematovision_core.predict import Classifier

    from hematovision_core import gradcam

    classifier = Classifier.load(folder)
    classifier.warm_up()
    # Streamlit runs full garbage collections after every script run; with a model's ~500k
    # long-lived TensorFlow objects each costs 0.3-4 s. Freeze them out of the collector's sight.
    gc.freeze()
    # Trace the default Grad-CAM (~2 s) in the background: the page renders meanwhile, and the
    # first explanation, usually a few seconds later, takes milliseconds.
    # Not a daemon: exiting while TensorFlow traces in a daemon thread aborts the process.
    threading.Thread(target=gradcam.warm_up, args=(classifier,), daemon=False,
                     name="gradcam-warm-up").start()
    return classifier


def model_key(classifier) -> str:
    """A cache key naming a loaded model: folder and model-file checksum."""
    return f"{classifier.folder}:{classifier.metadata.get('model_sha256', '')}"


@st.cache_data(show_spinner=False, max_entries=32)
def classify_files(key: str, file_keys: tuple[tuple[str, str], ...], _classifier, _files,
                   true_labels: tuple | None = None):
    """`batch.classify_files`, cached by model and (name, sha1) of each file; bytes not hashed."""
    from hematovision_core.batch import classify_files as classify

    return classify(_classifier, _files, true_labels)


@st.cache_data(show_spinner=False, max_entries=256)
def heatmap_for(key: str, digest: str, class_index: int, method: str, layer: str,
                _classifier, _pixels):
    """A heatmap cached per model, image (sha1 of its bytes), class, method and layer.

    The overlay is not cached: it is cheap, so a new opacity or colour map redraws it from this.
    """
    from hematovision_core import gradcam

    return gradcam.compute_heatmap(_classifier, _pixels, class_index, method, layer)


@st.cache_data(show_spinner=False)
def example_pool(model_folder: str, data_dir: str, metadata: dict) -> list[tuple[str, str]]:
    """(path, true label) of the images a random example is drawn from (the test split if known)."""
    from hematovision_core.batch import example_records

    return [(str(r.path), r.label) for r in example_records(model_folder, data_dir, metadata)]


def show_image(container, path: Path, **image_options) -> None:
    """Show an image file in `container` (st or a column) from a cached JPEG copy, so 16-bit and
    TIFF images show too; an unreadable file gets a note instead of a traceback."""
    from hematovision_core.preprocessing import ImageError
    from hematovision_core.thumbnails import display_copy

    try:
        container.image(str(display_copy(get_settings().cache_dir, Path(path))), **image_options)
    except (ImageError, OSError) as error:
        container.warning(f"This image cannot be shown ({error}).")


def plain(text: str) -> str:
    """User text (a nickname, a file name) as Markdown that shows it as typed; see plain_text."""
    from hematovision_core.plain_text import markdown_literal

    return markdown_literal(text)


@st.cache_data(show_spinner=False)
def model_choices(models_dir: str) -> dict[str, dict]:
    """name -> metadata of every valid model folder (checksums checked once per process)."""
    return {folder.name: read_metadata(folder) for folder in list_model_folders(models_dir)}


def disclaimer() -> None:
    """What every page shows: the logo and the teaching-tool notice."""
    st.logo(str(LOGO))
    st.caption(f":material/info: {DISCLAIMER}")


def model_sidebar(settings: Settings | None = None):
    """Draw the model picker in the sidebar and return the chosen, loaded `Classifier`.

    Stops the page with a clear message when no valid model folder exists.
    """
    settings = settings or get_settings()
    choices = model_choices(str(settings.models_dir))
    if not choices:
        st.error(f"No trained model found in `{settings.models_dir}`. Train one with "
                 "`python -m hematovision_core.train --data DIR --out models/NAME`.")
        st.stop()
    names = list(choices)
    default = names.index(DEFAULT_MODEL) if DEFAULT_MODEL in names else 0
    with st.sidebar:
        name = st.selectbox("Model", names, index=default, key="model_name")
        metadata = choices[name]
        st.caption("Classes: " + ", ".join(metadata["display_names"]))
        metrics = metadata.get("metrics") or {}
        validation, test = metrics.get("validation") or {}, metrics.get("test") or {}
        # Cross-validation scores every development image, where a small validation split
        # (blood-cells: 28 smears) would show the luck of its draw: prefer it where it exists.
        cross_validation = metrics.get("cross_validation") or {}
        headline, prefix = (cross_validation, "CV") if cross_validation else (validation, "Val")
        if headline:
            cols = st.columns(2)
            cols[0].metric(f"{prefix} accuracy", f"{headline['accuracy']:.1%}")
            cols[1].metric(f"{prefix} macro-F1", f"{headline['macro_f1']:.1%}")
        if cross_validation:
            st.caption(f"{cross_validation.get('folds', 'k')}-fold cross-validation over "
                       f"{cross_validation['n']} train + validation images"
                       + (f" (validation split alone: accuracy {validation['accuracy']:.1%}, "
                          f"{validation['n']} images)" if validation else ""))
        if test:
            st.caption(f"Internal test split: accuracy {test['accuracy']:.1%}, "
                       f"macro-F1 {test['macro_f1']:.1%} ({test['n']} images)")
    return load_classifier(str(Path(settings.models_dir) / name))


def data_missing_message(settings: Settings | None = None, dataset: str = "pbc") -> None:
    """Explain where data is looked for and how to get it."""
    settings = settings or get_settings()
    st.warning(
        f"No images found in the data folder `{settings.data_dir}`. Download a public dataset "
        f"on a connected machine with\n\n`python -m hematovision_core.data download {dataset}`\n\n"
        "or point `HEMATOVISION_DATA` at an existing folder of `<class>/<image>` files."
    )
