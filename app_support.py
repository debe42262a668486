"""Streamlit glue shared by every page: settings, the shared models, the sidebar, common notices.

The only place (with the pages) that imports streamlit; `hematovision_core` stays cache-agnostic.
Models and other per-file work are kept in `app_cache`, out of reach of a browser's cache clear.
"""

from __future__ import annotations

import logging
import time
from concurrent.futures import Future
from pathlib import Path

import streamlit as st

import app_cache
from hematovision_core import DISCLAIMER, explain_pool
from hematovision_core.config import Settings
from hematovision_core.heatmap import Heatmap, layer_name, needs_gradients
from hematovision_core.model_io import METADATA_FILE, MODEL_FILE, RUNTIME_FILE, ModelFolder

DEFAULT_MODEL = "pbc-8class"
LOGO = Path(__file__).resolve().parent / "assets" / "logo.svg"
MODEL_FILES = (METADATA_FILE, RUNTIME_FILE, MODEL_FILE)


def get_settings() -> Settings:
    """Settings from the environment, read on each run (cheap), so tests can change them."""
    return Settings.from_env()


def load_classifier(folder: str):
    """The model of a folder, loaded and warmed once per process and version of its files;
    every session and page shares it."""
    from hematovision_core.predict import Classifier

    def load():
        classifier = Classifier.load(folder)
        classifier.warm_up()
        return classifier

    return app_cache.once("classifier", app_cache.stamp(Path(folder) / name for name in MODEL_FILES),
                          load)


def warm_up_server(settings: Settings) -> list[str]:
    """Load every model, build its quiz pool and start the heatmap workers, before the first
    visitor; returns the names of the models loaded.

    The quiz pool (the split manifest read and every image's existence checked: 4,616 files for
    pbc-8class) is what the first Quiz run of a lecture hall would otherwise build while the
    rest of the hall waits on it."""
    folders = [str(Path(settings.models_dir) / name) for name in model_choices(settings.models_dir)]
    for folder in folders:
        classifier = load_classifier(folder)
        try:
            quiz_pool(classifier, settings.data_dir, "")
        except (OSError, ValueError, KeyError) as error:  # the Quiz page says it again
            logging.warning("No quiz pool for %s yet: %s", classifier.name, error)
    explain_pool.start(folders)
    return [Path(folder).name for folder in folders]


def model_key(classifier) -> str:
    """A cache key naming a loaded model: folder and model-file checksum."""
    return f"{classifier.folder}:{classifier.model_folder.model_sha256}"


CLASSIFIED = "classified_batch"  # session state: (request, results) of this session's last batch


def classify_files(key: str, file_keys: tuple[tuple[str, str], ...], classifier, files,
                   true_labels: tuple | None = None):
    """`batch.classify_files` for this session's latest batch, kept in its own session state.

    Reruns of the batch (another heatmap, another image of it, the what-if sliders) classify
    nothing: the request is the model and the (name, sha1) of each file. The results leave with
    the session. A process-wide cache of the last 32 batches (st.cache_data) held about 1 MB per
    image after a lecture's sessions had closed, and unpickled every result on every rerun.
    """
    from hematovision_core.batch import classify_files as classify

    request = (key, file_keys, true_labels)
    kept = st.session_state.get(CLASSIFIED)
    if kept is not None and kept[0] == request:
        return kept[1]
    outcome = classify(classifier, files, true_labels)
    st.session_state[CLASSIFIED] = (request, outcome)
    return outcome


def explain(classifier, result, class_index: int, method: str, layer: str) -> Heatmap:
    """A heatmap for one classified image (`batch.ImageResult`). The last-block Grad-CAM comes
    from the classification's own forward pass; the others queue for a worker process, and the
    user sees where they are in the queue."""
    if not needs_gradients(method, layer):
        return classifier.heatmap(result.class_maps, class_index)
    request = (model_key(classifier), result.digest, class_index, method, layer_name(layer))
    for attempt in range(2):
        # Concurrent sessions asking for the same map share one queued job.
        future = app_cache.once("gradient-heatmap", request, lambda: explain_pool.submit(
            classifier.folder, result.pixels, class_index, method, layer))
        try:
            return wait_for(future, method)
        except explain_pool.BrokenProcessPool:  # its worker died: the pool restarts, ask again
            app_cache.forget("gradient-heatmap", request)
            if attempt:
                raise


# What a user waits for each method in a worker, on this project's 2-core server (seconds) and
# why; the progress bar runs against it. SmoothGrad: 15 noisy copies, each an eager backward pass.
EXPECTED_SECONDS = {"SmoothGrad": (25, "15 noisy copies of the image, one gradient pass each"),
                    "Score-CAM": (5, "one forward pass per feature map"),
                    "Grad-CAM++": (2, "one gradient pass"), "Grad-CAM": (2, "one gradient pass")}


def wait_for(future: Future, what: str) -> Heatmap:
    """Wait for a queued heatmap, saying how long it usually takes, how long it has taken and
    how many requests are ahead meanwhile."""
    notice = st.empty()
    started = time.monotonic()
    expected, why = EXPECTED_SECONDS.get(what, (0, ""))
    while not future.done():
        elapsed = time.monotonic() - started
        ahead = max(0, explain_pool.pending() - 1)
        queue = f"; {ahead} other request(s) in the queue" if ahead else ""
        usual = f" It usually takes about {expected} s ({why})." if expected else ""
        text = f"Computing {what} in a worker process: {elapsed:.0f} s{queue}.{usual}"
        if expected:
            notice.progress(min(elapsed / expected, 0.99), text=text)
        else:
            notice.info(text, icon=":material/hourglass_top:")
        time.sleep(0.25)
    notice.empty()
    return future.result()


# --- data folders, splits and question pools: once per version of their files ------------------


def model_files_stamp(classifier) -> tuple:
    """What identifies a loaded model's version and its split manifest."""
    model = classifier.model_folder
    if classifier.folder is None:
        return (model.model_sha256,)
    folder = Path(classifier.folder)
    return app_cache.stamp([folder / METADATA_FILE, folder / MODEL_FILE, model.manifest_file])


def list_datasets(data_dir: Path) -> list[str]:
    """`explorer.list_datasets`, rescanned only when a folder in the data folder changes."""
    from hematovision_core import explorer

    return app_cache.once("datasets", app_cache.folder_stamp(data_dir, depth=3),
                          lambda: explorer.list_datasets(data_dir))


def split_source(data_dir: Path, classifier, dataset: str, split: str):
    """`explorer.split_source`, once per model manifest and version of the dataset folder."""
    from hematovision_core import explorer

    key = (str(data_dir), dataset, split, model_files_stamp(classifier),
           app_cache.folder_stamp(Path(data_dir) / dataset))
    return app_cache.once("split_source", key, lambda: explorer.split_source(
        data_dir, classifier, dataset, split))


def cached_predictions(cache_dir: Path, classifier, source):
    """The explorer's cached predictions for a split (None until computed), read from disk once
    per version of the cache folder."""
    from hematovision_core import split_predictions

    folder = split_predictions.cache_folder(cache_dir, classifier, source)
    key = (str(folder), model_files_stamp(classifier),
           app_cache.stamp([folder / split_predictions.META_FILE]))
    if not (folder / split_predictions.META_FILE).is_file():
        return None  # not cached: nothing to remember, the next run looks again
    return app_cache.once("split_predictions", key, lambda: split_predictions.load_cached(
        cache_dir, classifier, source))


def domain_flags(classifier, predictions):
    """The out-of-domain verdict of each image of a cached split (None without a guard),
    computed from its cached features once per cache folder and guard."""
    from hematovision_core import explorer

    if classifier.guard is None or predictions is None:
        return None
    key = (str(predictions.folder), (classifier.model_folder.guard or {}).get("sha256"),
           classifier.guard.threshold)
    scores = app_cache.once("domain_scores", key,
                            lambda: explorer.domain_scores(predictions, classifier.guard))
    return classifier.guard.flags(scores)


def prediction_job(cache_dir: Path, classifier, source):
    """The background run of the model over a split (`background.Job`), if one is running or
    failed; None when none was started or it finished (its results are then on disk)."""
    from hematovision_core import background, split_predictions

    return background.get(str(split_predictions.cache_folder(cache_dir, classifier, source)))


def start_prediction_job(cache_dir: Path, classifier, source):
    """Start the model's first pass over a split in a thread shared by every session asking
    for the same model and split (or join the one running); `cached_predictions` then reads
    the result from disk. Returns the `background.Job`."""
    from hematovision_core import background, split_predictions

    key = str(split_predictions.cache_folder(cache_dir, classifier, source))
    return background.start(key, lambda progress: split_predictions.compute(
        cache_dir, classifier, source, progress=progress))


def quiz_sources(classifier, data_dir: Path) -> list[str]:
    """Dataset folders a quiz of this model may draw from, besides its own split."""
    from hematovision_core.quiz_pool import unseen_datasets

    datasets = list_datasets(data_dir)
    key = (model_files_stamp(classifier), tuple(datasets), str(data_dir))
    return app_cache.once("quiz_sources", key, lambda: unseen_datasets(
        classifier.model_folder, datasets, data_dir))


def quiz_pool(classifier, data_dir: Path, source: str) -> list:
    """The quiz candidates of a source ("" for the model's own split, else a dataset folder),
    built once per model manifest and version of the image folders."""
    from hematovision_core.quiz_pool import DEFAULT_DATASET, folder_pool, manifest_pool

    root = Path(data_dir) / (source or classifier.model_folder.dataset or DEFAULT_DATASET)
    key = (model_files_stamp(classifier), str(data_dir), source, app_cache.folder_stamp(root))
    if source:
        return app_cache.once("quiz_pool", key, lambda: folder_pool(root, data_dir,
                                                                    classifier.classes))
    return app_cache.once("quiz_pool", key, lambda: manifest_pool(classifier.model_folder,
                                                                  data_dir))


QUIZ_VIEWS_KEPT = 256  # (answer, overlay) pairs of about 20 kB: a lecture's worth of images


def quiz_feedback(classifier, candidate):
    """The model's answer on a quiz image and its Grad-CAM overlay as JPEG bytes
    (`(Candidate, bytes)`), made once per model and version of the image file.

    A lecture hall on one quiz code is shown the same images in the same order: one forward pass
    and one JPEG encoding serve every student, and the identical bytes are one media file in
    Streamlit's store (it keys files by content), not one per session.
    """
    from dataclasses import replace

    from hematovision_core.quiz_pool import answer_with_heatmap
    from hematovision_core.thumbnails import jpeg_bytes

    def compute():
        view = answer_with_heatmap(classifier, candidate)
        return view.candidate, jpeg_bytes(view.overlay)

    key = (model_key(classifier), app_cache.stamp([candidate.path]))
    judged, overlay = app_cache.once("quiz_feedback", key, compute, max_entries=QUIZ_VIEWS_KEPT)
    # The same file may be two students' different candidates (ids are relative to a data
    # folder): keep the caller's id and truth, take the model's answer from the cache.
    return replace(candidate, predicted=judged.predicted, confidence=judged.confidence,
                   second=judged.second, second_probability=judged.second_probability), overlay


def example_pool(classifier, data_dir: Path) -> list[tuple[str, str]]:
    """(path, true label) of the images a random example is drawn from (the test split if
    known), listed once per model manifest and data folder."""
    from hematovision_core.batch import example_records

    key = (model_files_stamp(classifier), str(data_dir))
    return app_cache.once("example_pool", key, lambda: [
        (str(r.path), r.label) for r in example_records(classifier.model_folder, data_dir)])


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


def model_choices(models_dir: str | Path) -> dict[str, ModelFolder]:
    """name -> record of every valid model folder, read once per version of their files."""
    from hematovision_core.model_io import list_model_folders

    root = Path(models_dir)
    folders = sorted(p for p in root.iterdir() if p.is_dir()) if root.is_dir() else []
    files = [root] + [folder / name for folder in folders for name in MODEL_FILES]
    return app_cache.once("model_choices", app_cache.stamp(files), lambda: {
        folder.name: ModelFolder.read(folder) for folder in list_model_folders(root)})


def disclaimer() -> None:
    """What every page shows: the logo and the teaching-tool notice."""
    st.logo(str(LOGO))
    st.caption(f":material/info: {DISCLAIMER}")


MODEL_WIDGET = "model_name"  # the sidebar's selectbox
# Streamlit drops a widget's state at the end of a run on a page that does not draw it, and each
# page's sidebar is a different widget to it: so on a page change the choice fell back to the
# default. A plain session_state key survives every page; the widget is set from it on each run.
CHOSEN_MODEL = "chosen_model"


def remember_model_choice() -> None:
    """The selectbox's callback: keep the user's choice where page changes do not reach it."""
    st.session_state[CHOSEN_MODEL] = st.session_state[MODEL_WIDGET]


def restore_model_choice(names: list[str]) -> None:
    """Give the sidebar's selectbox the model chosen earlier in this session (on any page), else
    the default model; a choice whose folder is gone falls back to the default too."""
    chosen = st.session_state.get(CHOSEN_MODEL) or st.session_state.get(MODEL_WIDGET)
    if chosen not in names:
        chosen = DEFAULT_MODEL if DEFAULT_MODEL in names else names[0]
    # Always set, even when equal: after a page change the key still reads the old page's
    # widget, while this page's selectbox is new and would start from its default.
    st.session_state[MODEL_WIDGET] = chosen


def model_card_text(model) -> str:
    """The sidebar's model card as one caption: its classes, its headline scores and where they
    come from.

    One element, where it was six (two metrics in two columns and three captions): every full
    page run sends the sidebar, and in a lecture hall each element is a message that the one
    server process makes, queues and sends under the GIL for every student.
    """
    metrics = model.metrics
    validation, test = metrics.get("validation") or {}, metrics.get("test") or {}
    # Cross-validation scores every development image, where a small validation split
    # (blood-cells: 28 smears) would show the luck of its draw: prefer it where it exists.
    cross_validation = metrics.get("cross_validation") or {}
    headline, prefix = (cross_validation, "CV") if cross_validation else (validation, "Val")
    lines = ["Classes: " + ", ".join(model.display_names)]
    if headline:
        lines.append(f"**{prefix} accuracy {headline['accuracy']:.1%}** · "
                     f"{prefix} macro-F1 {headline['macro_f1']:.1%}")
    if cross_validation:
        lines.append(f"{cross_validation.get('folds', 'k')}-fold cross-validation over "
                     f"{cross_validation['n']} train + validation images"
                     + (f" (validation split alone: accuracy {validation['accuracy']:.1%}, "
                        f"{validation['n']} images)" if validation else ""))
    if test:
        lines.append(f"Internal test split: accuracy {test['accuracy']:.1%}, "
                     f"macro-F1 {test['macro_f1']:.1%} ({test['n']} images)")
    return "\n\n".join(lines)


def model_sidebar(settings: Settings | None = None):
    """Draw the model picker in the sidebar and return the chosen, loaded `Classifier`.

    Stops the page with a clear message when no valid model folder exists.
    """
    settings = settings or get_settings()
    choices = model_choices(settings.models_dir)
    if not choices:
        st.error(f"No trained model found in `{settings.models_dir}`. Train one with "
                 "`python -m hematovision_core.train --data DIR --out models/NAME`.")
        st.stop()
    names = list(choices)
    restore_model_choice(names)
    with st.sidebar:
        name = st.selectbox("Model", names, key=MODEL_WIDGET, on_change=remember_model_choice)
        st.session_state[CHOSEN_MODEL] = name
        model = choices[name]
        st.caption(model_card_text(model))
    return load_classifier(str(Path(settings.models_dir) / name))


def data_missing_message(settings: Settings | None = None, dataset: str = "pbc") -> None:
    """Explain where data is looked for and how to get it; `dataset` is the folder inside the
    data folder that was looked for ("pbc", "blood-cells/TRAIN")."""
    from hematovision_core.download import download_command

    settings = settings or get_settings()
    command = download_command(dataset)
    download = (f"Download a public dataset on a connected machine with\n\n`{command}`\n\nor "
                if command else f"Put images in `{dataset}` there, or ")
    st.warning(
        f"No images found in the data folder `{settings.data_dir}`. {download}"
        "point `HEMATOVISION_DATA` at an existing folder of `<class>/<image>` files."
    )


# --- Transfer Learning Lab: images, features (computed once, in the background), heads ------------

LAB_PER_CLASS = 200  # images a class the lab uses: a seeded sample, so a first pass takes minutes
LAB_SAMPLE_SEED = 0  # that sample's seed (the draw's seed only picks the training examples)


def lab_images(data_dir: Path, dataset: str, per_class: int = LAB_PER_CLASS):
    """`transfer_features.list_lab_images`, once per version of the dataset's folders."""
    from hematovision_core import transfer_features

    root = Path(data_dir) / dataset
    key = (str(root), per_class, app_cache.folder_stamp(root))
    return app_cache.once("lab_images", key, lambda: transfer_features.list_lab_images(
        root, per_class, LAB_SAMPLE_SEED))


def lab_sources(classifier) -> dict:
    """name -> `FeatureSource`: ImageNet weights (found as Keras finds them), random weights,
    and the chosen model."""
    from hematovision_core import transfer_features

    return {"imagenet": transfer_features.imagenet_source(),
            "random": transfer_features.FeatureSource("random"),
            "finetuned": transfer_features.finetuned_source(classifier.folder,
                                                            classifier.metadata)}


def lab_features(cache_dir: Path, source, images, crop: str):
    """One source's cached features (None until computed), read once per version of the file."""
    from hematovision_core import transfer_features

    path = transfer_features.cache_path(cache_dir, source, images, crop)
    if not path.is_file():
        return None
    return app_cache.once("lab_features", (str(path), app_cache.stamp([path])),
                          lambda: transfer_features.load_cached(cache_dir, source, images, crop))


def _lab_job_key(cache_dir: Path, images, crop: str) -> str:
    return f"transfer-lab:{cache_dir}:{images.root}:{images.fingerprint}:{crop}"


def lab_job(cache_dir: Path, images, crop: str):
    """The background feature pass for these images, if running or failed, else None."""
    from hematovision_core import background

    return background.get(_lab_job_key(cache_dir, images, crop))


def start_lab_job(cache_dir: Path, classifier, sources: dict, images, crop: str):
    """Compute the missing sources' features in a thread shared by every session asking for the
    same images: ImageNet and random ones in the lab's worker process (TensorFlow), the chosen
    model's here on ONNX Runtime. Returns the `background.Job`."""
    from hematovision_core import background, lab_pool, transfer_features

    missing = [source for source in sources.values()
               if transfer_features.load_cached(cache_dir, source, images, crop) is None]

    def work(progress) -> None:
        total = len(images.paths) * len(missing)
        for number, source in enumerate(missing):
            offset = number * len(images.paths)
            if source.name == "finetuned":
                backend = lambda files: transfer_features.onnx_pooled(classifier, files)  # noqa
            else:
                backend = lab_pool.pooled_backend(source, crop)
            transfer_features.cached_features(
                cache_dir, source, images, crop, backend,
                progress=lambda done, _, offset=offset: progress(offset + done, total))

    return background.start(_lab_job_key(cache_dir, images, crop), work)


def _lab_stamp(cache_dir: Path, sources: dict, images, crop: str, names) -> tuple:
    """What identifies the feature files of these sources: paths and versions."""
    from hematovision_core import transfer_features

    return app_cache.stamp(transfer_features.cache_path(cache_dir, sources[name], images, crop)
                           for name in names)


def lab_run(cache_dir: Path, sources: dict, images, crop: str, features: dict,
            shots: tuple[int, ...], seed: int):
    """`transfer_lab.run_lab`, once per (feature files, k values, seed) in the process."""
    from hematovision_core.transfer_lab import run_lab

    key = (_lab_stamp(cache_dir, sources, images, crop, features), shots, seed)
    return app_cache.once("lab_run", key, lambda: run_lab(features, shots, seed))


def lab_feature_space(cache_dir: Path, sources: dict, images, crop: str, name: str, found):
    """The 2-D map (PCA) of one source's cached features, once per version of their file."""
    from hematovision_core.transfer_lab import feature_space

    key = _lab_stamp(cache_dir, sources, images, crop, [name])
    return app_cache.once("lab_space", key, lambda: feature_space(found.features))


def wait_for_lab(future: Future, what: str, expected: float):
    """Wait for the lab worker's answer, saying how long it has taken and how long it may."""
    from hematovision_core import lab_pool

    notice = st.empty()
    started = time.monotonic()
    while not future.done():
        elapsed = time.monotonic() - started
        ahead = max(0, lab_pool.pending() - 1)
        queue = f"; {ahead} other request(s) in the queue" if ahead else ""
        notice.progress(min(elapsed / expected, 0.99),
                        text=f"{what} in the lab's worker process (TensorFlow): {elapsed:.0f} s"
                             f"{queue}. The first request starts TensorFlow and builds the "
                             f"network, about {expected:.0f} s; later ones take a second.")
        time.sleep(0.25)
    notice.empty()
    return future.result()
