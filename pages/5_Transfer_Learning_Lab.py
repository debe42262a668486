"""Transfer Learning Lab: a new head trained live on k examples per class, on three networks'
frozen features, scored on the rest; the feature space before and after; inside the network."""

from __future__ import annotations

import streamlit as st

from app_support import (LAB_PER_CLASS, data_missing_message, disclaimer, get_settings,
                         lab_feature_space, lab_features, lab_images, lab_job, lab_run,
                         lab_sources, list_datasets, model_sidebar, plain, start_lab_job,
                         wait_for_lab)
from hematovision_core import charts, explorer
from hematovision_core.inside_network import map_picture
from hematovision_core.preprocessing import ImageError
from hematovision_core.thumbnails import thumbnail
from hematovision_core.transfer_features import SOURCE_NAMES, SOURCES
from hematovision_core.transfer_lab import CURVE_SHOTS, MAX_SHOTS

PROGRESS_SECONDS = 2  # how often the feature pass's progress bar is redrawn
EXAMPLES_SHOWN = 10  # training examples shown per class (k may be 50)
INSIDE_SECONDS = 30  # a first look inside: TensorFlow starts and builds the network

# Images a second for a first feature pass on this project's 2 busy cores: MobileNetV2 on
# TensorFlow in the lab's worker (ImageNet, random) and the fine-tuned model on ONNX Runtime.
IMAGES_PER_SECOND = {"imagenet": 25, "random": 25, "finetuned": 60}
WORKER_START_SECONDS = 20

INTRO = (
    "Transfer learning in one picture. A network trained on ImageNet's photos has learned "
    "edges, textures and shapes; here a **new head** (one linear layer, softmax regression) is "
    "trained on its frozen features from just **k examples per class**, in a fraction of a "
    "second, and scored on the rest of the images. The same head on the same images, given a "
    "**randomly initialised** network's features, shows what ImageNet's weights are worth; on "
    "the **fine-tuned** model's features it shows where fine-tuning took them.")
CURVE_LESSON = (
    "**Reading the curve.** ImageNet features reach a useful accuracy from a handful of "
    "examples a class: what was learned on photos of dogs and cars carries over to stained "
    "cells. Random features sit near chance however many examples the head sees: the network's "
    "architecture alone is not enough. The fine-tuned model's features separate the classes "
    "almost from the first example.")
MAP_LESSON = (
    "Each point is an image, placed by the first two principal components of its 1,280 "
    "features. ImageNet features already group some cell types; after fine-tuning on blood "
    "cells the classes pull apart into clusters a linear head can split.")
OWN_DATA_NOTE = (
    "The fine-tuned model was trained on this dataset, so most of these images (its training "
    "split) are familiar to it: its curve shows what its features do on images it has seen, an "
    "upper bound rather than a fair comparison. Pick another dataset to see it transfer.")

st.set_page_config(page_title="Transfer Learning Lab · HematoVision", layout="wide")


def minutes_for(count: int, sources: list[str]) -> int:
    """Minutes a first feature pass over `count` images may take for these sources."""
    seconds = WORKER_START_SECONDS + sum(count / IMAGES_PER_SECOND[s] for s in sources)
    return max(1, round(seconds / 60))


def features_needed(count: int, sources: list[str], minutes: int) -> str:
    return (f"The lab needs the pooled features of these {count} images from: "
            f"{', '.join(sources)}. Computing them takes about {minutes} minute(s), once, in the "
            "background (TensorFlow runs in a worker process); every head after that trains in "
            "a fraction of a second.")


def sample_caption(images, per_class: int, crop: str) -> str:
    capped = images.capped_at is not None
    return (f"{len(images.paths)} images of {len(images.classes)} classes"
            + (f": a fixed random sample of at most {per_class} a class, so that the first "
               "feature pass takes minutes, not an hour" if capped else "")
            + ("; each image cropped around its white cell, as the chosen model looks at it"
               if crop != "none" else "") + ".")


def draw_caption(run, k: int) -> str:
    capped = ", ".join(f"{label} ({limit})" for label, limit in run.draw.capped.items())
    fewer = any(limit < k for limit in run.draw.capped.values())
    return (f"Seed {run.draw.seed}: {len(run.draw.train[k])} training images "
            f"({k} a class{', fewer where a class is small' if fewer else ''}), "
            f"{len(run.draw.evaluate)} scored, the same for every source and k."
            + (f" A class gives at most half its images to training: {capped}." if capped
               else ""))


def controls_ui(settings, classifier, datasets: list[str]) -> tuple[str, int, int]:
    """Dataset, k and seed; returns them as plain values."""
    own = classifier.model_folder.dataset
    if st.session_state.get("lab_dataset") not in datasets:
        st.session_state["lab_dataset"] = own if own in datasets else datasets[0]
    st.session_state.setdefault("lab_k", 5)
    st.session_state.setdefault("lab_seed", 0)
    left, middle, right = st.columns([2, 3, 1])
    dataset = left.selectbox("Dataset", datasets, key="lab_dataset",
                             format_func=lambda d: settings.data_dir.name if d == "." else d)
    k = middle.slider("Examples per class (k)", 1, MAX_SHOTS, key="lab_k",
                      help="The new head learns from k images of each class, drawn at random "
                           "with the seed; every head is scored on the images outside the "
                           f"largest draw of the curve (k = {max(CURVE_SHOTS)}).")
    seed = right.number_input("Seed", 0, 9999, step=1, key="lab_seed",
                              help="Another seed draws other examples.")
    return dataset, int(k), int(seed)


@st.fragment(run_every=PROGRESS_SECONDS)
def job_progress_ui(job, count: int) -> None:
    """The feature pass's progress, redrawn on its own; the page reruns when it ends."""
    if job.finished.is_set():
        st.rerun(scope="app")
    total = job.total or count
    st.progress(job.done / max(total, 1),
                text=f"Computing features: {job.done} of {total} image passes "
                     f"({job.seconds:.0f} s). This happens once; every later visit reads them "
                     "from disk.")


def features_ui(settings, classifier, sources, images, crop) -> dict | None:
    """Every source's cached features, or the button (or progress) that computes them."""
    features = {name: lab_features(settings.cache_dir, source, images, crop)
                for name, source in sources.items()}
    missing = [name for name, found in features.items() if found is None]
    if not missing:
        return features
    job = lab_job(settings.cache_dir, images, crop)
    if job is not None and job.error is not None:
        st.error(f"The features could not be computed: {job.error}", icon=":material/error:")
    elif job is not None:
        job_progress_ui(job, len(images.paths) * len(missing))
        return None
    minutes = minutes_for(len(images.paths), missing)
    st.info(features_needed(len(images.paths), [SOURCE_NAMES[n] for n in missing], minutes))
    st.button(f"Compute the features (about {minutes} min, once)", key="lab_compute",
              type="primary", on_click=start_lab_job,
              args=(settings.cache_dir, classifier, sources, images, crop))
    return None


def results_ui(run, k: int, names: dict, own_data: bool) -> None:
    """Accuracy at k, the learning curve and the confusion matrix at k."""
    chance = 1 / len(run.classes)
    cells = st.columns(len(SOURCES))
    for cell, source in zip(cells, SOURCES):
        evaluation = run.at(source, k)
        cell.metric(SOURCE_NAMES[source], f"{evaluation.accuracy:.1%}",
                    help=f"A head trained on {evaluation.n_train} images, scored on "
                         f"{len(run.draw.evaluate)}.")
    st.caption(draw_caption(run, k))
    if own_data:
        st.warning(OWN_DATA_NOTE, icon=":material/info:")
    curves = {source: [(e.shots, e.accuracy) for e in run.curves[source] if e.shots in CURVE_SHOTS]
              for source in SOURCES}
    chart, matrix = st.columns([1.2, 1])
    chart.plotly_chart(charts.learning_curve_chart(curves, SOURCE_NAMES, chance, k),
                       key="lab_curve", config=charts.CHART_CONFIG)
    with matrix:
        source = st.radio("Confusion matrix of", SOURCES, key="lab_matrix_source",
                          horizontal=True, format_func=SOURCE_NAMES.get)
        evaluation = run.at(source, k)
        st.plotly_chart(charts.confusion_matrix_heatmap(
            evaluation.confusion, [names.get(c, c) for c in run.classes],
            f"k = {k}: {evaluation.accuracy:.1%} right"), key="lab_confusion",
            config=charts.CHART_CONFIG)
    st.markdown(CURVE_LESSON)


def examples_ui(settings, images, run, k: int, names: dict) -> None:
    """The training images of the k-shot heads, a row per class."""
    with st.expander(f"The {len(run.draw.train[k])} examples the heads learned from", expanded=False):
        chosen = run.draw.train[k]
        for label in run.classes:
            of_class = [run.paths[i] for i in chosen if run.labels[i] == label]
            st.markdown(f"**{names.get(label, label)}** ({len(of_class)})")
            cells = st.columns(EXAMPLES_SHOWN)
            for cell, path in zip(cells, of_class[:EXAMPLES_SHOWN]):
                try:
                    cell.image(str(thumbnail(settings.cache_dir, images.root / path)),
                               width="stretch")
                except (ImageError, OSError):
                    cell.caption("unreadable")
            if len(of_class) > EXAMPLES_SHOWN:
                st.caption(f"and {len(of_class) - EXAMPLES_SHOWN} more")


def maps_ui(settings, sources, images, crop, features, names: dict) -> None:
    """PCA of ImageNet features beside the fine-tuned model's, coloured by class."""
    st.subheader("The feature space before and after fine-tuning")
    columns = st.columns(2)
    for column, source in zip(columns, ("imagenet", "finetuned")):
        found = features[source]
        space = lab_feature_space(settings.cache_dir, sources, images, crop, source, found)
        column.plotly_chart(charts.class_map_chart(
            space.coords, found.labels, names, f"{SOURCE_NAMES[source]}: PCA",
            space.explained_variance), key=f"lab_map_{source}", config=charts.CHART_CONFIG)
    st.caption(MAP_LESSON)


def inside_ui(settings, sources, images, crop, names: dict) -> None:
    """One image's strongest feature maps at an early, a middle and the last block."""
    from hematovision_core import lab_pool

    import app_cache

    st.subheader("Inside the network")
    left, right = st.columns([2, 1])
    path = left.selectbox("Image", images.paths, key="lab_inside_image",
                          format_func=lambda p: f"{names.get(p.split('/')[0], '')} · {p}")
    source_name = right.radio("Network", SOURCES, key="lab_inside_source",
                              format_func=SOURCE_NAMES.get)
    source = sources[source_name]
    request = (repr(source.identity()), str(images.root / path), crop)
    if not st.button("Look inside", key="lab_inside_go") and \
            st.session_state.get("_lab_inside_shown") != request:
        st.caption("Shows the 4 channels that respond most to the image at each depth.")
        return
    st.session_state["_lab_inside_shown"] = request
    future = app_cache.once("lab_inside", request, lambda: lab_pool.submit_inside(
        source, images.root / path, crop))
    try:
        view = wait_for_lab(future, "Reading the feature maps", INSIDE_SECONDS)
    except (ValueError, FileNotFoundError, OSError) as error:
        app_cache.forget("lab_inside", request)
        st.error(f"Cannot look inside: {error}")
        return
    except lab_pool.BrokenProcessPool:
        app_cache.forget("lab_inside", request)
        st.error("The lab's worker process stopped; press the button again to restart it.")
        return
    image_column, maps_column = st.columns([1, 4])
    image_column.image(view.image, caption="What the network sees", width="stretch")
    with maps_column:
        for response in view.responses:
            height, width, channels = response.grid
            st.markdown(f"**{response.depth.title()}** · `{response.layer}`: a {height}x{width} "
                        f"grid of {channels} channels, one square per {response.stride} px. "
                        f"{response.sentence}")
            cells = st.columns(len(response.channels))
            for cell, channel, strength, values in zip(cells, response.channels,
                                                       response.strengths, response.maps):
                cell.image(map_picture(values, 112), width="stretch",
                           caption=f"channel {channel} (mean {strength:.2f})")


settings = get_settings()
classifier = model_sidebar(settings)
st.title("Transfer Learning Lab")
disclaimer()
st.markdown(INTRO)

datasets = list_datasets(settings.data_dir)
if not datasets:
    data_missing_message(settings, "pbc")
    st.stop()
dataset, k, seed = controls_ui(settings, classifier, datasets)
try:
    images = lab_images(settings.data_dir, dataset)
except (FileNotFoundError, ValueError, OSError) as error:
    st.error(f"Cannot use this dataset: {error}")
    st.stop()
crop = classifier.crop
st.caption(sample_caption(images, LAB_PER_CLASS, crop))
names = {label: explorer.display_name(classifier, label) for label in images.classes}
sources = lab_sources(classifier)

features = features_ui(settings, classifier, sources, images, crop)
if features is not None:
    try:
        run = lab_run(settings.cache_dir, sources, images, crop, features,
                      tuple(sorted({*CURVE_SHOTS, k})), seed)
    except ValueError as error:
        st.error(f"Cannot train on this dataset: {error}")
        st.stop()
    results_ui(run, k, names, classifier.model_folder.dataset == dataset)
    examples_ui(settings, images, run, k, names)
    maps_ui(settings, sources, images, crop, features, names)
inside_ui(settings, sources, images, crop, names)
st.caption(f"Model for the fine-tuned features: {plain(classifier.name)}.")
