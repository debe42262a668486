"""Classify: upload, photograph or draw blood-cell images; see the prediction and where it looks."""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

import streamlit as st
from streamlit.errors import StreamlitAPIException

from app_downloads import prepared_download
from app_support import (classify_files, data_missing_message, disclaimer, example_pool,
                         explain, get_settings, model_key, model_sidebar, plain)
from hematovision_core import charts
from hematovision_core.batch import (bytes_digest, differential, draw_example,
                                     refuse_other_types, results_csv, results_rows)
from hematovision_core.data import IMAGE_EXTENSIONS
from hematovision_core.heatmap import (COLORMAPS, EXPLAIN_LAYERS, METHODS, colorize, grid_note,
                                       is_empty, overlay)
from hematovision_core.morphology import card_for
from hematovision_core.ood import NOTICE
from hematovision_core.perturb import PERTURBATIONS, apply_perturbations
from hematovision_core.report import html_report

st.set_page_config(page_title="Classify · HematoVision", page_icon=":material/biotech:",
                   layout="wide")

SOURCES = ("Upload images", "Camera", "Random example")
# A MIME type in the list (the same files as .png) turns off Streamlit's own extension check,
# which rejects the whole batch when a crafted request sends one other file type;
# refuse_other_types checks each file instead.
UPLOAD_TYPES = [extension.lstrip(".") for extension in IMAGE_EXTENSIONS] + ["image/png"]
PREDICTED = "predicted"  # the "class to explain" option that follows each image's prediction
DEPTH_HELP = {"early": "early block: edges and colour", "middle": "middle block: textures",
              "last": "last block: whole-cell evidence"}

settings = get_settings()
classifier = model_sidebar(settings)
key = model_key(classifier)
st.title(":material/biotech: Classify a blood-cell image")
disclaimer()


def inputs_ui() -> tuple[list[tuple[str, bytes]], list[str | None] | None]:
    """Draw the input widgets; return (name, bytes) pairs and true labels (examples only)."""
    source = st.segmented_control("Images from", SOURCES, default=SOURCES[0], key="source",
                                  required=True) \
        or SOURCES[0]
    if source == "Camera":
        photo = st.camera_input("Photograph a cell (e.g. a phone on the eyepiece)", key="camera")
        return ([("camera photo", photo.getvalue())] if photo else []), None
    if source == "Random example":
        return example_ui()
    what = ("single-cell images" if classifier.crop == "none"
            else "blood-smear fields (the model finds the white cell in each)")
    try:
        uploads = st.file_uploader(f"Upload one or more {what}", type=UPLOAD_TYPES,
                                   accept_multiple_files=True, key="uploads")
    except StreamlitAPIException as error:  # what Streamlit still checks, e.g. a NUL in a name
        st.error(f"These uploads cannot be used ({error}). Reload the page and upload again.")
        return [], None
    st.caption("Images are classified in memory and never saved by HematoVision; while a file over "
               "1 MB uploads, the web server holds it in an unnamed temporary file, freed at once. "
               "Your files are dropped when you remove them or close the page.")
    files, refused = refuse_other_types([(upload.name, upload.getvalue())
                                         for upload in uploads or []])
    for failure in refused:
        st.error(f"**{plain(failure.name)}**: {failure.message}", icon=":material/error:")
    return files, None


def example_ui() -> tuple[list[tuple[str, bytes]], list[str | None] | None]:
    """A random labelled image from the data folder (the model's test split when known)."""
    pool = example_pool(classifier, settings.data_dir)
    if not pool:
        data_missing_message(settings, classifier.model_folder.dataset or "pbc")
        return [], None
    if st.button("Draw a random example", icon=":material/casino:", key="draw_example") \
            or "example" not in st.session_state:
        st.session_state["example"] = draw_example([tuple(item) for item in pool])
    path, label = st.session_state["example"]
    try:
        data = Path(path).read_bytes()
    except OSError as error:
        st.error(f"Cannot read the example {plain(Path(path).name)}: {error}")
        return [], None
    return [(Path(path).name, data)], [label]


def explain_controls_ui() -> dict:
    """Grad-CAM controls; returns method, class option, depth, opacity and colour map."""
    columns = st.columns([1.1, 1.3, 1.7, 1.1, 0.9])
    method = columns[0].selectbox("Method", METHODS, key="method",
                                  help="Score-CAM takes a few seconds, SmoothGrad about 25.")
    class_option = columns[1].selectbox(
        "Evidence for", [PREDICTED, *classifier.classes], key="explain_class",
        format_func=lambda c: "the predicted class" if c == PREDICTED
        else classifier.display_names[classifier.classes.index(c)])
    depth = columns[2].radio("Layer", list(EXPLAIN_LAYERS), index=len(EXPLAIN_LAYERS) - 1,
                             key="depth", horizontal=True, disabled=method == "SmoothGrad",
                             help="; ".join(DEPTH_HELP.values())
                             + ". SmoothGrad explains the input pixels, so it has no layer.")
    opacity = columns[3].slider("Opacity", 0.0, 1.0, 0.5, 0.05, key="opacity")
    colormap = columns[4].selectbox("Colour map", list(COLORMAPS), key="colormap")
    return dict(method=method, class_option=class_option, depth=depth, opacity=opacity,
                colormap=colormap)


def boxed_field_image(digest: str):
    """The uploaded field (long side at most 640 px) with the white cell the model found boxed,
    or None (no white cell found, or not an uploaded file)."""
    from hematovision_core.localize import boxed_field
    from hematovision_core.preprocessing import ImageError, load_image

    data = originals.get(digest)
    if data is None:
        return None
    try:
        image = load_image(data)
    except ImageError:
        return None
    image.thumbnail((640, 640))
    return boxed_field(image)


def prediction_ui(result) -> None:
    """Predicted class, confidence, uncertainty, probabilities and the morphology card."""
    prediction = result.prediction
    left, right = st.columns([1, 1.3])
    with left:
        field = boxed_field_image(result.digest) if classifier.crop != "none" else None
        if field is not None:  # a smear model: the field, and beside it what the model reads
            whole, crop = st.columns([1.4, 1])
            whole.image(field, width="stretch", output_format="JPEG",
                        caption=f"{plain(result.name)}: the white cell found (green square)")
            crop.image(result.image_rgb, width="stretch", output_format="JPEG",
                       caption="What the model looks at")
        else:
            st.image(result.image_rgb, width="stretch", output_format="JPEG",
                     caption=plain(result.name) + (" (no white cell found: the whole field)"
                                                   if classifier.crop != "none" else ""))
    with right:
        st.metric("Predicted cell type", prediction.display_name,
                  f"{prediction.confidence:.1%} calibrated confidence", delta_color="off",
                  delta_arrow="off")
        if result.true_label:
            truth = classifier.display_names[classifier.classes.index(result.true_label)] \
                if result.true_label in classifier.classes else result.true_label
            verdict = ":green[correct]" if result.true_label == prediction.label else ":red[wrong]"
            st.markdown(f"**True label:** {truth} ({verdict})")
        domain_ui(prediction)
        if result.uncertainty:
            st.warning(result.uncertainty, icon=":material/help:")
        st.plotly_chart(charts.probability_bars(prediction.probabilities, classifier.display_names),
                        key=f"probabilities_{result.digest}", config=charts.CHART_CONFIG)
    card = card_for(prediction.label)
    if card:
        with st.expander(f"Morphology: {prediction.display_name}", expanded=True):
            if card.also_called:  # one name, the model's (model.json); another one as a caption
                st.caption(f"Also called {card.also_called}.")
            facts = st.columns(5)
            for column, (name, value) in zip(facts, (("Size", card.size), ("Nucleus", card.nucleus),
                                                     ("Cytoplasm", card.cytoplasm),
                                                     ("Granules", card.granules),
                                                     ("Normal share", card.normal_share))):
                column.markdown(f"**{name}**  \n{value}")
            st.markdown("**Look for:** " + "; ".join(card.key_features))
            for other, how in card.look_alikes.items():
                other_card = card_for(other)
                st.markdown(f"- **vs {other_card.display_name if other_card else other}:** {how}")


def domain_ui(prediction) -> None:
    """The out-of-domain warning, in plain words, when the guard flags the image."""
    if prediction.out_of_domain:
        st.error(f"**Out of domain.** {NOTICE} (score {prediction.ood_score:.1f}, above "
                 f"{classifier.guard.threshold:.1f}, which 5% of the validation images exceed)",
                 icon=":material/travel_explore:")


def what_if_ui(result) -> None:
    """Sliders that change the shown image as another camera, lamp, focus, stain or file format
    would, with the prediction and out-of-domain flag of the changed image, live."""
    with st.expander("What if? Change the image and watch the model", expanded=False):
        st.caption("The model was trained on one lab's images. Move a slider and see how much "
                   "of its confidence survives a dimmer lamp, a paler stain or a blurred focus.")
        levels = []
        columns = st.columns(4)
        for number, (name, spec) in enumerate(PERTURBATIONS.items()):
            levels.append((name, columns[number % 4].slider(
                f"{name} ({spec.unit})", spec.low, spec.high, spec.neutral, spec.step,
                key=f"whatif_{name}")))
        changed = [(name, level) for name, level in levels
                   if level != PERTURBATIONS[name].neutral]
        if not changed:
            st.info("Move a slider to change the image.", icon=":material/tune:")
            return
        image = apply_perturbations(result.image_rgb, changed)
        prediction = classifier.classify_view(image)
        left, right = st.columns([1, 1.3])
        left.image(image, width="stretch", output_format="JPEG",
                   caption=", ".join(f"{name} {level:g}" for name, level in changed))
        with right:
            before = result.prediction
            st.metric("Prediction on the changed image", prediction.display_name,
                      f"{prediction.confidence:.1%} (was {before.display_name} "
                      f"{before.confidence:.1%})", delta_color="off", delta_arrow="off")
            domain_ui(prediction)
            if prediction.out_of_domain is False:
                st.caption("Still like the images the model learned from.")
            st.plotly_chart(charts.probability_bars(prediction.probabilities,
                                                    classifier.display_names),
                            key="whatif_probabilities")


def explanation_ui(result, controls: dict):
    """Original, heatmap and overlay side by side; returns (heatmap, overlay) or None."""
    method = controls["method"]
    class_index = result.prediction.class_index if controls["class_option"] == PREDICTED \
        else classifier.classes.index(controls["class_option"])
    request = (result.digest, class_index, controls["depth"])
    asked = st.session_state.setdefault("scorecam_asked", set())  # (digest, class, depth)
    if method == "Score-CAM" and request not in asked:
        ask = st.empty()  # the notice and its button go once the map is asked for
        with ask.container():
            st.info("Score-CAM runs the model once per feature map (a few seconds).")
            clicked = st.button("Compute Score-CAM", key="run_scorecam",
                                icon=":material/play_arrow:")
        if not clicked:
            return None
        ask.empty()
        asked.add(request)
    try:
        heatmap = explain(classifier, result, class_index, method, controls["depth"])
    except (ValueError, RuntimeError) as error:  # e.g. a worker that could not be started
        st.error(f"The {method} map could not be computed: {error}", icon=":material/error:")
        return None
    blended = overlay(result.image_rgb, heatmap, controls["opacity"], controls["colormap"])
    images = st.columns(3)
    # JPEG, not Streamlit's default PNG for arrays: a 256 px photograph encodes in 0.2 ms
    # instead of 8, and a cell loses nothing visible.
    images[0].image(result.image_rgb, caption="Original", width="stretch", output_format="JPEG")
    images[1].image(colorize(heatmap, controls["colormap"]), width="stretch",
                    caption=f"{method}: evidence for {classifier.display_names[class_index]}")
    images[2].image(blended, caption=f"Overlay (layer {heatmap.layer})", width="stretch",
                    output_format="JPEG")
    explained = classifier.display_names[class_index]
    if is_empty(heatmap):
        st.info(f"An empty map: nothing in this image raises the model's score for "
                f"**{explained}** at this layer, so every pixel gets the lowest colour. That is "
                "the model's way of saying it sees no sign of that class here (expected for a "
                "class it rejects); choose the predicted class to see what it did see.",
                icon=":material/visibility_off:")
    note = grid_note(controls["depth"], classifier.input_size) if method != "SmoothGrad" else None
    if note:
        st.caption(note)
    return heatmap, blended


# Headers a person reads (the CSV keeps the plain field names, for spreadsheets and scripts).
TABLE_COLUMNS = {
    "file": st.column_config.TextColumn("File"),
    "prediction": st.column_config.TextColumn("Prediction"),
    "confidence": st.column_config.ProgressColumn("Confidence", format="percent", min_value=0.0,
                                                  max_value=1.0),
    "uncertain": st.column_config.CheckboxColumn("Uncertain"),
    "runner_up": st.column_config.TextColumn("Runner-up"),
    "runner_up_probability": st.column_config.NumberColumn("Runner-up probability",
                                                           format="percent"),
    "true_label": st.column_config.TextColumn("True label"),
    "out_of_domain": st.column_config.CheckboxColumn("Unlike training images?"),
    "note": None,  # the long sentence stays in the CSV
}


def batch_ui(results) -> object:
    """Table, differential chart and CSV for many images; returns the result to show in detail."""
    rows = results_rows(results, classifier.display_names)
    names = [result.name for result in results]

    def select_row() -> None:  # a click in the table selects that file below
        selected = st.session_state["results_table"].selection.rows
        if selected:
            st.session_state["selected_file"] = selected[0]

    st.subheader(f"{len(results)} images")
    # The whole width for the table: beside the chart, the runner-up columns were cut off.
    st.dataframe(rows, key="results_table", on_select=select_row, selection_mode="single-row",
                 hide_index=True, width="stretch", column_config=TABLE_COLUMNS)
    flagged = sum(bool(result.prediction.out_of_domain) for result in results)
    if flagged:
        st.warning(f"{flagged} of {len(results)} images flagged out of domain. {NOTICE}",
                   icon=":material/travel_explore:")
    st.download_button("Download results (CSV)", results_csv(results, classifier.display_names),
                       file_name="hematovision-results.csv", mime="text/csv", key="csv",
                       on_click="ignore", icon=":material/download:")
    st.plotly_chart(charts.differential_chart(differential(results, classifier.display_names)),
                    key="differential", config=charts.CHART_CONFIG)
    if st.session_state.get("selected_file", 0) >= len(results):
        st.session_state["selected_file"] = 0
    index = st.selectbox("Show image", range(len(results)), format_func=lambda i: names[i],
                         key="selected_file")
    return results[index]


files, true_labels = inputs_ui()
originals = {bytes_digest(data): data for _, data in files}  # for the smear model's boxed field
results, failures = [], []
if files:
    with st.spinner("Classifying..."):
        file_keys = tuple((name, bytes_digest(data))
                          for name, data in files)
        results, failures = classify_files(key, file_keys, classifier, files,
                                           tuple(true_labels) if true_labels else None)
for failure in failures:
    st.error(f"**{plain(failure.name)}**: {failure.message}", icon=":material/error:")

if results:
    shown = batch_ui(results) if len(results) > 1 else results[0]
    st.divider()
    prediction_ui(shown)
    what_if_ui(shown)
    st.subheader("Where does the model look?")
    controls = explain_controls_ui()
    explained = explanation_ui(shown, controls)
    if explained:
        heatmap, blended = explained
        # Made on request: encoding its images was a third of a classification's server time.
        prepared_download("Download report (HTML)",
                          lambda: html_report(shown, blended, heatmap, classifier.model_folder,
                                              datetime.now(timezone.utc)).encode("utf-8"),
                          key="report", subject=(shown.digest, heatmap.method,
                                                 heatmap.class_index, heatmap.layer,
                                                 controls["opacity"], controls["colormap"]),
                          file_name=f"hematovision-report-{shown.digest[:8]}.html",
                          mime="text/html", prepare_label="Prepare a report (HTML)",
                          icon=":material/description:")
elif not failures and not files:
    st.info("Add an image above to classify it.", icon=":material/arrow_upward:")
