"""Dataset explorer: browse labelled cells, see where the model errs, and map the dataset."""

from __future__ import annotations

import streamlit as st

from app_support import (cached_predictions, data_missing_message, disclaimer, domain_flags,
                         get_settings, list_datasets, model_sidebar, prediction_job, show_image,
                         split_source, start_prediction_job)
from hematovision_core import charts, explorer
from hematovision_core.explorer import ALL, DOMAINS, OUTCOMES, PAGE_SIZE, Filters
from hematovision_core.morphology import card_for
from hematovision_core.preprocessing import ImageError
from hematovision_core.thumbnails import heatmap_overlay, thumbnail

AUTO_COMPUTE_LIMIT = 1000  # splits up to this size are run through the model without asking
WAIT_SECONDS = 8  # how long a page run waits for a new job: small splits show at once
PROGRESS_SECONDS = 2  # how often the background run's progress bar is redrawn
IMAGES_PER_SECOND = 30  # for the time estimate: measured on 2 busy CPU cores (about 60 when idle)
GRID_COLUMNS = 6
ERRORS_GRID_COLUMNS = 4  # these captions name two classes
HIGHLIGHT_COLUMNS = 3
HIGHLIGHTS = 6  # images in each of "most confident mistakes" and "least confident correct"
SPLIT_NAMES = {"train": "Training", "val": "Validation", "test": "Test", ALL: "All images"}
OUTCOME_NAMES = {"all": "All", "correct": "Correct", "wrong": "Wrong"}
DOMAIN_NAMES = {"all": "All", "in": "Like its training images",
                "out": "Unlike them (out of domain)"}
TABS = ("Browse", "Where the model errs", "Map")

st.set_page_config(page_title="Dataset explorer · HematoVision", layout="wide")


def select_image(path: str) -> None:
    st.session_state["explorer_selected"] = path


def reset_pages() -> None:
    for key in ("explorer_browse_page", "explorer_errs_page"):
        st.session_state[key] = 1


def data_ui(settings, classifier, datasets: list[str]) -> tuple[str, str]:
    """Sidebar pickers for the dataset folder and split; returns (dataset, split)."""
    own = classifier.model_folder.dataset
    model_changed = st.session_state.get("_explorer_model") != str(classifier.folder)
    if model_changed or st.session_state.get("explorer_dataset") not in datasets:
        # Another model: start from the data it was trained on, where its splits are known.
        st.session_state["_explorer_model"] = str(classifier.folder)
        st.session_state["explorer_dataset"] = own if own in datasets else datasets[0]
    with st.sidebar:
        dataset = st.selectbox("Dataset", datasets, key="explorer_dataset", on_change=reset_pages,
                               format_func=lambda d: settings.data_dir.name if d == "." else d)
        splits = explorer.split_options(classifier, dataset)
        if st.session_state.get("explorer_split") not in splits:
            st.session_state["explorer_split"] = splits[0]
        split = st.selectbox("Split", splits, key="explorer_split", on_change=reset_pages,
                             format_func=SPLIT_NAMES.get)
        if not explorer.is_models_own(classifier, dataset):
            st.caption("Not the model's training folder: every image is shown, and images of a "
                       "class the model does not know always count as wrong.")
    return dataset, split


def predictions_ui(settings, classifier, source):
    """Cached predictions for the split; else start (or follow) the model's run over it in the
    background, and show its progress while the user browses. None until they exist."""
    predictions = cached_predictions(settings.cache_dir, classifier, source)
    if predictions is not None:
        return predictions
    count = len(source.paths)
    minutes = max(1, round(count / IMAGES_PER_SECOND / 60))
    job = prediction_job(settings.cache_dir, classifier, source)
    if job is not None and job.error is not None:
        st.error(f"The model could not run over this split: {job.error}", icon=":material/error:")
        st.button("Try again", key="explorer_compute_again", on_click=start_prediction_job,
                  args=(settings.cache_dir, classifier, source))
        return None
    if job is None:
        if count > AUTO_COMPUTE_LIMIT:  # a click's worth: minutes of both CPU cores
            st.info(f"The model has not seen this split yet. Running it over {count} images takes "
                    f"about {minutes} minute(s), once, in the background: browse meanwhile; the "
                    "results are kept on disk for every later visit.")
            st.button(f"Run the model on these {count} images (about {minutes} min, once)",
                      key="explorer_compute", type="primary", on_click=start_prediction_job,
                      args=(settings.cache_dir, classifier, source))
            return None
        job = start_prediction_job(settings.cache_dir, classifier, source)
        if job.wait(WAIT_SECONDS):  # a small split: its results in this very run
            return predictions_after(settings, classifier, source)
    job_progress_ui(job, count)
    return None


def predictions_after(settings, classifier, source):
    """The predictions a finished job left on disk, or None with its error shown."""
    job = prediction_job(settings.cache_dir, classifier, source)
    if job is not None and job.error is not None:
        st.error(f"The model could not run over this split: {job.error}", icon=":material/error:")
        return None
    predictions = cached_predictions(settings.cache_dir, classifier, source)
    if predictions is not None and predictions.skipped:
        st.warning(f"{len(predictions.skipped)} file(s) could not be read and were left out, "
                   f"e.g. `{predictions.skipped[0]}`.")
    return predictions


@st.fragment(run_every=PROGRESS_SECONDS)
def job_progress_ui(job, count: int) -> None:
    """The background run's progress, redrawn every few seconds on its own; the whole page
    reruns once it ends, to show the predictions."""
    if job.finished.is_set():
        st.rerun(scope="app")
    total = job.total or count
    st.progress(job.done / max(total, 1),
                text=f"The model is looking at this split in the background: {job.done} of "
                     f"{total} images ({job.seconds:.0f} s). Browse meanwhile: outcomes, errors "
                     "and the map appear here when it is done.")


def thumbnail_ui(settings, source, path: str, caption: str, key: str) -> None:
    """One gallery cell: thumbnail, caption and a View button that selects the image."""
    try:
        st.image(str(thumbnail(settings.cache_dir, source.root / path)), width="stretch")
    except (ImageError, OSError):
        st.caption(f"Unreadable: {path}")
        return
    # The button sits right under the image so a row's buttons line up; captions vary in length.
    st.button("View", key=key, on_click=select_image, args=(path,), width="stretch")
    if caption:
        st.caption(caption)


def grid_ui(settings, source, paths, captions, prefix: str, columns: int = GRID_COLUMNS) -> None:
    for start in range(0, len(paths), columns):
        cells = st.columns(columns)
        for cell, path, caption in zip(cells, paths[start:start + columns],
                                       captions[start:start + columns]):
            with cell:
                thumbnail_ui(settings, source, path, caption, f"explorer_view_{prefix}_{path}")


def page_number_ui(key: str, count: int) -> int:
    st.session_state.setdefault(key, 1)
    st.session_state[key] = min(max(1, int(st.session_state[key])), count)
    return int(st.number_input(f"Page (of {count})", min_value=1, max_value=count, step=1,
                               key=key))


def card_ui(label: str) -> None:
    card = card_for(label)
    if card is None:
        return
    with st.expander(f"Morphology: {card.display_name}", expanded=False):
        st.markdown(f"**Size** {card.size}  \n**Nucleus** {card.nucleus}  \n"
                    f"**Cytoplasm** {card.cytoplasm}  \n**Granules** {card.granules}  \n"
                    f"**Normal share** {card.normal_share}")
        st.markdown("\n".join(f"- {feature}" for feature in card.key_features))


def browse_ui(settings, source, names, outcome_captions) -> None:
    """A gallery of one class, or up to three side by side, with each class's morphology card."""
    labels = sorted(set(source.labels))
    chosen = st.session_state.get("explorer_classes") or []
    if not chosen or any(label not in labels for label in chosen):
        st.session_state["explorer_classes"] = [labels[0]]
    chosen = st.multiselect("Classes (up to 3 side by side, e.g. look-alikes)", labels,
                            key="explorer_classes", max_selections=3, on_change=reset_pages,
                            format_func=lambda label: names.get(label, label)) or [labels[0]]
    per_class = PAGE_SIZE // len(chosen)
    by_class = {label: explorer.paths_of_class(source, label) for label in chosen}
    count = max(explorer.page_of(paths, 1, per_class).count for paths in by_class.values())
    number = page_number_ui("explorer_browse_page", count)
    for column, label in zip(st.columns(len(chosen), gap="medium"), chosen):
        with column:
            page = explorer.page_of(by_class[label], number, per_class)
            st.subheader(f"{names.get(label, label)} ({page.total})")
            card_ui(label)
            captions = outcome_captions(list(page.items))
            grid_ui(settings, source, list(page.items), captions, f"browse_{label}",
                    columns=max(2, GRID_COLUMNS // len(chosen)))


def confusion_selection_ui(table) -> None:
    """Turn a new click on a confusion-matrix cell into the true/predicted filters."""
    state = st.session_state.get("explorer_confusion")
    points = (state or {}).get("selection", {}).get("points", []) if state else []
    cells = [tuple(p["customdata"]) for p in points if len(p.get("customdata") or []) == 2]
    if cells and cells[0] != st.session_state.get("_explorer_cell_seen"):
        true_label, predicted_label = cells[0]
        st.session_state["_explorer_cell_seen"] = cells[0]
        st.session_state["explorer_true"] = true_label
        st.session_state["explorer_predicted"] = predicted_label
        st.session_state["explorer_outcome"] = "all"
        st.session_state["explorer_confidence"] = (0.0, 1.0)
        st.session_state["explorer_domain"] = "all"
        st.session_state["explorer_errs_page"] = 1


def filters_ui(table, classes, names) -> Filters:
    rows = list(explorer.confusion_table(table, classes).index)
    st.session_state.setdefault("explorer_outcome", "all")
    st.session_state.setdefault("explorer_confidence", (0.0, 1.0))
    st.session_state.setdefault("explorer_domain", "all")
    for key, options in (("explorer_true", rows), ("explorer_predicted", classes)):
        if st.session_state.get(key) not in [None, *options]:
            st.session_state[key] = None
    any_name = lambda value: "Any" if value is None else names.get(value, value)  # noqa: E731
    left, middle = st.columns(2)
    true_label = left.selectbox("True class", [None, *rows], key="explorer_true",
                                format_func=any_name, on_change=reset_pages)
    predicted_label = middle.selectbox("Predicted class", [None, *classes],
                                       key="explorer_predicted", format_func=any_name,
                                       on_change=reset_pages)
    right, far = st.columns(2)
    outcome = right.radio("Answers", OUTCOMES, key="explorer_outcome", horizontal=True,
                          format_func=OUTCOME_NAMES.get, on_change=reset_pages)
    low, high = far.slider("Confidence", 0.0, 1.0, step=0.05, key="explorer_confidence",
                           on_change=reset_pages)
    guarded = table["out_of_domain"].notna().any()
    domain = st.radio("Images", DOMAINS, key="explorer_domain", horizontal=True,
                      format_func=DOMAIN_NAMES.get, on_change=reset_pages, disabled=not guarded,
                      help="The model's out-of-domain guard: images unlike the ones it learned "
                           "from (another lab, stain or magnification?)" if guarded else
                           "This model has no out-of-domain guard "
                           "(python -m hematovision_core.ood --model ...).")
    if guarded:
        flagged = int((table["out_of_domain"] == True).sum())  # noqa: E712
        st.caption(f"{flagged} of {len(table)} images ({flagged / max(len(table), 1):.1%}) are "
                   "flagged as unlike the model's training images.")
    return Filters(true_label, predicted_label, outcome, (float(low), float(high)),
                   domain if guarded else "all")


def caption_for(row, names) -> str:
    """"✓ 93%" for a right answer, "✗ Neutrophil 71%" (the model's answer) for a wrong one."""
    if row.correct:
        return f"✓ {row.confidence:.0%}"
    return f"✗ {names.get(row.predicted, row.predicted)} {row.confidence:.0%}"


def labelled_caption(row, names) -> str:
    """The true class, then the answer: "Eosinophil ✓ 93%", "Basophil ✗ Monocyte 58%"."""
    return f"{names.get(row.label, row.label)} {caption_for(row, names)}"


def highlights_ui(settings, classifier, source, rows, names, title: str, prefix: str) -> None:
    st.markdown(f"**{title}**")
    if rows.empty:
        st.caption("None in this split.")
        return
    show_maps = st.session_state.get("explorer_heatmaps", True)
    row_list = list(rows.itertuples())
    cells = [cell for start in range(0, len(row_list), HIGHLIGHT_COLUMNS)
             for cell in st.columns(HIGHLIGHT_COLUMNS)][:len(row_list)]
    for cell, row in zip(cells, row_list):
        with cell:
            thumbnail_ui(settings, source, row.path, labelled_caption(row, names),
                         f"explorer_view_{prefix}_{row.path}")
            if show_maps:
                try:
                    index = classifier.classes.index(row.predicted)
                    st.image(str(heatmap_overlay(settings.cache_dir, classifier,
                                                 source.root / row.path, index)),
                             caption="Grad-CAM (predicted class)", width="stretch")
                except (ImageError, OSError, ValueError) as error:
                    st.caption(f"No heatmap: {error}")


def errors_ui(settings, classifier, source, table, names) -> None:
    classes = list(classifier.classes)
    confusion_selection_ui(table)
    filters = filters_ui(table, classes, names)
    confusion = explorer.confusion_table(table, classes)
    selected = None
    if filters.true_label is not None and filters.predicted_label is not None:
        selected = (filters.true_label, filters.predicted_label)
    st.plotly_chart(charts.confusion_matrix_chart(confusion, names, selected),
                    key="explorer_confusion", on_select="rerun", selection_mode="points",
                    config=charts.CHART_CONFIG)
    shown = explorer.apply_filters(table, filters)
    number = page_number_ui("explorer_errs_page", explorer.page_of(shown.index, 1).count)
    page = explorer.page_of(shown.index, number)
    rows = list(shown.loc[list(page.items)].itertuples())
    st.markdown(f"Showing {len(rows)} of {page.total} images matching the filters "
                f"({len(table)} in the split).")
    grid_ui(settings, source, [row.path for row in rows],
            [labelled_caption(row, names) for row in rows],
            "errs", columns=ERRORS_GRID_COLUMNS)
    st.session_state.setdefault("explorer_heatmaps", True)
    st.toggle("Grad-CAM heatmaps on the highlights below", key="explorer_heatmaps")
    highlights_ui(settings, classifier, source, explorer.most_confident_mistakes(table, HIGHLIGHTS),
                  names, "Most confident mistakes", "mistakes")
    highlights_ui(settings, classifier, source, explorer.least_confident_correct(table, HIGHLIGHTS),
                  names, "Least confident correct answers", "unsure")


def map_ui(predictions, table, names) -> None:
    state = st.session_state.get("explorer_map")
    points = (state or {}).get("selection", {}).get("points", []) if state else []
    # Each point's customdata is its row number (a list of one, from some plotly versions).
    values = [p.get("customdata") for p in points]
    rows = [int(v[0] if isinstance(v, list) else v) for v in values if v not in (None, [])]
    if rows and rows[0] != st.session_state.get("_explorer_point_seen"):
        st.session_state["_explorer_point_seen"] = rows[0]
        if 0 <= rows[0] < len(table):
            select_image(table.at[rows[0], "path"])
    selected = st.session_state.get("explorer_selected")
    selected_rows = table.index[table["path"] == selected] if selected else []
    figure = charts.feature_map_chart(table, names, predictions.explained_variance,
                                      int(selected_rows[0]) if len(selected_rows) else None)
    st.plotly_chart(figure, key="explorer_map", on_select="rerun", selection_mode="points",
                    config=charts.CHART_CONFIG)
    st.caption("Each point is one image, placed by the model's 1280 pooled features (the first "
               "two principal components). Cells the model sees alike sit together; click a point "
               "to view its image.")


def detail_ui(settings, classifier, source, predictions, table, names) -> None:
    """The selected image, large, with its label, the model's answer and its Grad-CAM."""
    path = st.session_state.get("explorer_selected")
    labels = dict(zip(source.paths, source.labels))
    if path not in labels:
        st.info("Press **View** under an image, or click a point on the map, to see it here.")
        return
    label = labels[path]
    st.subheader(names.get(label, label))
    st.caption(path)
    rows = table.index[table["path"] == path] if table is not None else []
    try:
        if len(rows):  # cached: no model call
            probabilities = predictions.probabilities[int(rows[0])]
        else:
            probabilities = classifier.classify([source.root / path])[0].probabilities
        predicted_index = int(probabilities.argmax())
        predicted = classifier.classes[predicted_index]
        image_tab, map_tab = st.tabs(["Image", "Grad-CAM"])
        show_image(image_tab, source.root / path, width="stretch")
        map_tab.image(str(heatmap_overlay(settings.cache_dir, classifier, source.root / path,
                                          predicted_index)),
                      caption=f"Evidence for {names.get(predicted, predicted)}"
                      + ("" if classifier.crop == "none" else
                         ", on the part of the image the model looks at (around the white cell)"),
                      width="stretch")
    except (ImageError, OSError) as error:
        st.error(f"This image cannot be read: {error}")
        return
    verdict = "correct" if predicted == label else "wrong"
    st.markdown(f"Label **{names.get(label, label)}** · model says "
                f"**{names.get(predicted, predicted)}** ({verdict})")
    truth = classifier.classes.index(label) if label in classifier.classes else None
    st.plotly_chart(charts.probability_bars(
        probabilities, classifier.display_names, highlight=truth,
        title="Probabilities (true class in colour)" if truth is not None else "Probabilities"),
        key="explorer_detail_probabilities", config=charts.CHART_CONFIG)
    card_ui(label)


settings = get_settings()
classifier = model_sidebar(settings)
st.title("Dataset explorer")
disclaimer()

datasets = list_datasets(settings.data_dir)
if not datasets:
    data_missing_message(settings, "pbc")
    st.stop()
dataset, split = data_ui(settings, classifier, datasets)
try:
    source = split_source(settings.data_dir, classifier, dataset, split)
except (FileNotFoundError, ValueError, OSError) as error:
    st.error(f"Cannot read this dataset: {error}")
    st.stop()
if not source.paths:
    data_missing_message(settings, dataset)
    st.stop()

names = {label: explorer.display_name(classifier, label)
         for label in (*classifier.classes, *sorted(set(source.labels)))}
distribution = explorer.class_distribution(classifier, settings.data_dir, dataset, source)
st.plotly_chart(charts.class_distribution_chart(distribution, names, highlight=split),
                key="explorer_distribution", config=charts.CHART_CONFIG)

predictions = predictions_ui(settings, classifier, source)
table = (explorer.prediction_table(predictions, domain_flags(classifier, predictions))
         if predictions is not None else None)


def outcome_captions(paths) -> list[str]:
    """The model's answer under each gallery image ("" until predictions exist)."""
    if table is None:
        return [""] * len(paths)
    rows = {row.path: row for row in table[table["path"].isin(paths)].itertuples()}
    return [caption_for(rows[path], names) if path in rows else "" for path in paths]


main, detail = st.columns([2, 1], gap="medium")
with main:
    tabs = st.tabs(TABS, key="explorer_tab", on_change="rerun")
    with tabs[0]:
        if tabs[0].open:
            browse_ui(settings, source, names, outcome_captions)
    with tabs[1]:
        if tabs[1].open:
            if table is None:
                st.info("The model's answers on this split are not ready yet (see above).")
            else:
                errors_ui(settings, classifier, source, table, names)
    with tabs[2]:
        if tabs[2].open:
            if table is None:
                st.info("The model's answers on this split are not ready yet (see above).")
            else:
                map_ui(predictions, table, names)
with detail:
    detail_ui(settings, classifier, source, predictions, table, names)
