"""HematoVision: what the app is, how to use each page, and the active model's card.

Run with `streamlit run Home.py`.
"""

from __future__ import annotations

import streamlit as st

from app_support import disclaimer, get_settings, model_sidebar
from hematovision_core import charts, model_card

st.set_page_config(page_title="HematoVision", page_icon=":material/bloodtype:", layout="wide")

settings = get_settings()
classifier = model_sidebar(settings)
model = classifier.model_folder  # what model.json says, read once per version of the folder

st.title(":material/bloodtype: HematoVision")
disclaimer()
st.markdown(
    "A teaching dashboard for **white-blood-cell morphology** on stained peripheral blood "
    "smears. A MobileNetV2 network, trained on public images of single cells and of smear "
    "fields, names the cell type, says how sure it is, and shows **where in the image its "
    "evidence lies** (Grad-CAM).\n\n"
    "It is made for **students** learning to tell cells apart, **instructors** who want to show "
    "what a network attends to and where it goes wrong, and **lab staff** curious about "
    "automated differentials. It is not a diagnostic device."
)

st.subheader("How to use it")
guide = st.columns(5)
guide[0].markdown(
    "**:material/biotech: Classify**  \nUpload one or many images, take a photo through the "
    "eyepiece, or draw a random example. Read the probabilities and the morphology card, then "
    "open Grad-CAM: change the method, the class to explain and the layer depth.")
guide[1].markdown(
    "**:material/quiz: Quiz**  \nName the cell before the model does. Hints come from the "
    "morphology cards; after each answer you see what separates your answer from the truth.")
guide[2].markdown(
    "**:material/grid_view: Dataset Explorer**  \nBrowse the images behind the model by class "
    "and outcome, look at its mistakes and confusions, and see the whole set mapped in two "
    "dimensions.")
guide[3].markdown(
    "**:material/school: Instructor**  \nWith the instructor password, follow a class's quiz "
    "results: accuracy per cell type and the most common confusions.")
guide[4].markdown(
    "**:material/science: Transfer Learning Lab**  \nTrain a new head live on k examples per "
    "class, on ImageNet, random or fine-tuned features; compare their learning curves, see the "
    "feature space before and after fine-tuning, and look inside the network.")
st.caption("Pick the model in the sidebar; every page uses the one chosen there.")

st.header(f"Model card: {model.name}")
sizes = model_card.split_sizes(model)
dataset = model.dataset or "unknown"
facts = st.columns(4)
facts[0].metric("Classes", len(classifier.classes))
facts[1].metric("Training images", f"{sizes.get('train', 0):,}")
facts[2].metric("Validation / test images", f"{sizes.get('val', 0):,} / {sizes.get('test', 0):,}")
facts[3].metric("Input size", f"{classifier.input_size} px")
training = model.training
st.markdown(
    f"- **Architecture:** {model.architecture}\n"
    f"- **Training data:** `{dataset}` in the data folder, "
    f"{model.image_count:,} images split "
    f"{', '.join(f'{k} {v:,}' for k, v in sizes.items())} "
    "(by image checksum, no duplicates across splits)\n"
    f"- **Classes:** {', '.join(classifier.display_names)}\n"
    f"- **Preprocessing:** {model.preprocessing}"
    + (f"; then a square crop around the white cell (`{model.crop}`)"
       if model.crop != "none" else "")
    + ("; predictions average the 8 flips and 90-degree rotations of the image (test-time "
       "augmentation), heatmaps explain it as shown" if classifier.tta != "none" else "") + "\n"
    f"- **Calibration:** temperature scaling on the validation split (T = "
    f"{classifier.temperature:.2f}), so the confidence shown is a calibrated probability\n"
    + (f"- **Training:** {training.get('head_epochs', '?')} head epochs, then fine-tuning from "
       f"`{training.get('fine_tune_from', '?')}` for up to {training.get('epochs', '?')} epochs "
       f"({training.get('minutes', '?')} min)\n" if training else "")
    + f"- **Version:** {model_card.version_line(model)}"
)

headline = model_card.headline_metrics(model)
if headline.empty:
    st.info("This model folder records no evaluation figures yet.")
else:
    st.subheader("Validation and test figures")
    st.dataframe(model_card.as_text(headline, percent=(
        "accuracy", "macro-F1", "balanced accuracy", "top-2 accuracy"),
        decimals={"calibration error (ECE)": 3}), hide_index=True, width="stretch")
    note = model.metrics.get("note")
    st.caption((f"{note[0].upper()}{note[1:]}. " if isinstance(note, str) and note else "")
               + "The internal test split comes from the same source as the training images; "
               "expect lower figures on images from other labs, stains and microscopes.")
    split = "test" if model.metrics.get("test") else "validation"
    table_column, matrix_column = st.columns([1, 1.2])
    with table_column:
        st.markdown(f"**Per class ({'internal test' if split == 'test' else split} split)**")
        st.dataframe(model_card.as_text(model_card.per_class_table(model, split),
                                        percent=("precision", "recall", "F1")),
                     hide_index=True, width="stretch")
    matrix = model_card.confusion(model, split)
    if matrix:
        with matrix_column:
            st.plotly_chart(charts.confusion_matrix_heatmap(
                matrix, classifier.display_names, f"Confusion matrix ({split})"),
                key="confusion_matrix", config=charts.CHART_CONFIG)

calibration = model.calibration
if calibration and calibration.get("reliability"):
    chart_column, text_column = st.columns([1.2, 1])
    chart_column.plotly_chart(charts.reliability_diagram(
        calibration["reliability"], "Reliability (cross-validated, validation images)"),
        key="reliability")
    text_column.markdown(
        f"**What the probabilities mean.** Of the images given, say, 80%, about 80% are right: "
        f"the temperature {calibration['temperature']:.2f} (was "
        f"{calibration['temperature_before']:.2f}) was fit on {calibration['fit_on']}. "
        f"Cross-validated calibration error (ECE): {calibration['cross_validated_ece']:.3f}. "
        "They hold for images like the training images only."
        + (f"\n\n{calibration['note']}" if calibration.get("note") else ""))
guard = model.guard
if guard:
    rates = guard.get("flag_rates") or {}
    st.markdown(
        f"**Out-of-domain guard.** Images unlike the ones this model learned from (another lab, "
        f"stain or magnification) are flagged ({guard['score']} score on the pooled features; "
        f"threshold set on {guard.get('threshold_on', 'validation images')} to flag about "
        f"{guard.get('false_flag_rate', 0.05):.0%} of them)."
        + (f" Internal test split flagged: {rates['test']:.1%}." if "test" in rates else "")
        + (f" {guard['outside']} flagged: {rates['outside']:.1%}." if "outside" in rates else ""))

history = model_card.read_history(classifier.folder) if classifier.folder else None
if history:
    st.plotly_chart(charts.training_curves(history), key="training_curves",
                    config=charts.CHART_CONFIG)
else:
    st.caption("No training history (history.json) in this model folder.")
