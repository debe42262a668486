"""Streamlit glue shared by every page: settings, cached models, the sidebar, common notices.

The only place (with the pages) that imports streamlit; `hematovision_core` stays cache-agnostic.
"""

from __future__ import annotations

from pathlib import Path

import streamlit as st

from hematovision_core.config import Settings
from hematovision_core.model_io import list_model_folders, read_metadata

DEFAULT_MODEL = "pbc-8class"
DISCLAIMER = (
    "HematoVision is a teaching tool, not a diagnostic device. "
    "Never use its output for patient care."
)


def get_settings() -> Settings:
    """Settings from the environment, read on each run (cheap), so tests can change them."""
    return Settings.from_env()


@st.cache_resource(show_spinner="Loading the model (once per server)...")
def load_classifier(folder: str):
    """Load and warm up a model once per process; every session and page shares it."""
    from hematovision_core.predict import Classifier

    classifier = Classifier.load(folder)
    classifier.warm_up()
    return classifier


@st.cache_data(show_spinner=False)
def model_choices(models_dir: str) -> dict[str, dict]:
    """name -> metadata of every valid model folder (checksums checked once per process)."""
    return {folder.name: read_metadata(folder) for folder in list_model_folders(models_dir)}


def disclaimer() -> None:
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
        validation = (metadata.get("metrics") or {}).get("validation") or {}
        test = (metadata.get("metrics") or {}).get("test") or {}
        if validation:
            cols = st.columns(2)
            cols[0].metric("Val accuracy", f"{validation['accuracy']:.1%}")
            cols[1].metric("Val macro-F1", f"{validation['macro_f1']:.1%}")
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
