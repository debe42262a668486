"""Plotly figures for the pages; each function returns a figure and only pages draw it.

Interactive explorer figures carry each point's identity in `customdata`, so a page can turn a
selection event back into rows: the confusion matrix's cells carry (true label, predicted label)
and the map's points carry their row number in the prediction table.
"""

from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np
import pandas as pd
import plotly.graph_objects as go

ACCENT = "#8e244d"  # the theme's primary colour (haematoxylin-eosin magenta)
MUTED = "#b9a3ad"
TRAINING_STAGES = {"head": "head only", "fine_tune": "fine-tuning"}
# What pages pass as `config`: no plotly toolbar. It floated over the top right of every chart,
# hiding the end of its title (hover a chart for values; drag to zoom, double-click to reset).
CHART_CONFIG = {"displayModeBar": False}


MARGIN = {"l": 10, "r": 10, "t": 40, "b": 10}


def _compact(figure: go.Figure, height: int) -> go.Figure:
    # No template of our own: the dashboard draws every chart in Streamlit's theme, and copying
    # plotly's "plotly_white" into each figure cost 12 of a chart's 17 ms of server time.
    figure.update_layout(height=height, margin=MARGIN)
    return figure


def probability_bars(probabilities: Sequence[float], display_names: Sequence[str],
                     highlight: int | None = None, title: str = "Class probabilities") -> go.Figure:
    """Horizontal bars of every class's probability, best at the top; `highlight` in accent."""
    probabilities = np.asarray(probabilities, dtype=float)
    if len(probabilities) != len(display_names):
        raise ValueError("probabilities and display_names differ in length")
    highlight = int(np.argmax(probabilities)) if highlight is None else highlight
    order = np.argsort(probabilities)  # ascending: plotly draws the last bar at the top
    # One constructor with the layout as nested dicts: plotly's update_* calls parse every
    # "magic underscore" name, and this chart, drawn for every image Classify shows, took 5.4 ms
    # of server time under the GIL where it now takes 1.8.
    return go.Figure(
        go.Bar(
            x=probabilities[order],
            y=[display_names[i] for i in order],
            orientation="h",
            marker={"color": [ACCENT if i == highlight else MUTED for i in order]},
            text=[f"{p:.1%}" for p in probabilities[order]],
            textposition="outside",
            cliponaxis=False,  # "99.4%" beside a full bar runs past the axis: draw it, not clip it
            hovertemplate="%{y}: %{x:.1%}<extra></extra>",
        ),
        layout={"title": {"text": title}, "height": 70 + 32 * len(display_names),
                "margin": MARGIN,
                "xaxis": {"range": [0, 1.15], "tickformat": ".0%", "title": {"text": None}}},
    )


def differential_chart(shares: Mapping[str, float], title: str = "Differential") -> go.Figure:
    """Share of each cell type among classified images, as horizontal bars."""
    names = list(shares)
    values = np.array([shares[name] for name in names], dtype=float)
    figure = go.Figure(go.Bar(
        x=values, y=names, orientation="h", marker_color=ACCENT,
        text=[f"{v:.0%}" for v in values], textposition="outside", cliponaxis=False,
        hovertemplate="%{y}: %{x:.1%}<extra></extra>",
    ))
    figure.update_xaxes(range=[0, 1.15], tickformat=".0%")
    figure.update_yaxes(autorange="reversed")  # model order, top to bottom
    figure.update_layout(title=title)
    return _compact(figure, 70 + 32 * len(names))


def confusion_matrix_heatmap(matrix: Sequence[Sequence[int]], display_names: Sequence[str],
                             title: str = "Confusion matrix", answered: str = "predicted",
                             truth: str = "true") -> go.Figure:
    """Rows = true class, columns = predicted; colour = share of the row, text = counts."""
    counts = np.asarray(matrix, dtype=float)
    if counts.shape != (len(display_names), len(display_names)):
        raise ValueError(f"a {len(display_names)}-class confusion matrix must be square, "
                         f"got shape {counts.shape}")
    row_share = counts / np.maximum(counts.sum(axis=1, keepdims=True), 1)  # recall per row
    figure = go.Figure(go.Heatmap(
        # Plain lists, not arrays: the figure's JSON stays readable (plotly packs arrays as binary).
        z=row_share.tolist(), x=list(display_names), y=list(display_names),
        text=counts.astype(int).tolist(), texttemplate="%{text}", colorscale="RdPu", zmin=0, zmax=1,
        # No colour bar: on a phone it took a quarter of the width the cells need for their
        # counts; the colour is each row's share, which the hover says.
        showscale=False,
        hovertemplate="true %{y}, predicted %{x}: %{text} (%{z:.0%} of row)<extra></extra>",
    ))
    figure.update_xaxes(title=answered, side="bottom")
    figure.update_yaxes(title=truth, autorange="reversed")
    figure.update_layout(title=title)
    return _compact(figure, 160 + 40 * len(display_names))


def training_curves(history: Mapping) -> go.Figure:
    """Train and validation accuracy (and validation macro-F1) per epoch across both stages."""
    epochs = list(history.get("epochs") or [])
    if not epochs:
        raise ValueError("the history has no epochs")
    steps = list(range(1, len(epochs) + 1))  # epochs counted across stages
    labels = [f"{TRAINING_STAGES.get(e.get('stage'), e.get('stage'))} {e.get('epoch')}"
              for e in epochs]
    figure = go.Figure()
    for key, name, dash in (("accuracy", "train accuracy", "dot"),
                            ("val_accuracy", "validation accuracy", "solid"),
                            ("val_macro_f1", "validation macro-F1", "dash")):
        values = [e.get(key) for e in epochs]
        if any(v is not None for v in values):
            figure.add_trace(go.Scatter(x=steps, y=values, name=name, mode="lines+markers",
                                        line=dict(dash=dash), customdata=labels,
                                        hovertemplate="%{customdata}: %{y:.1%}<extra></extra>"))
    stages = [e.get("stage") for e in epochs]
    if "fine_tune" in stages and "head" in stages:
        start = stages.index("fine_tune") + 0.5  # between the last head and first fine-tune epoch
        figure.add_vline(x=start, line_dash="dot", line_color="grey",
                         annotation_text="fine-tuning starts", annotation_position="top left")
    # A fixed range: on a narrow screen plotly's own padding started the axis at epoch -1.
    figure.update_xaxes(title="epoch", dtick=1 if len(steps) <= 20 else None,
                        range=[0.5, len(steps) + 0.5])
    figure.update_yaxes(title=None, tickformat=".0%", range=[0, 1.02])
    figure.update_layout(title="Training curves", legend=dict(orientation="h", y=-0.25))
    return _compact(figure, 360)


def reliability_diagram(bins: Sequence[Mapping], title: str = "Reliability diagram"
                        ) -> go.Figure:
    """Accuracy against stated confidence per bin (`metrics.reliability_bins`): points below
    the diagonal are overconfident, above it underconfident; marker size = images in the bin."""
    if not bins:
        raise ValueError("no reliability bins to draw")
    sizes = np.array([b["n"] for b in bins], dtype=float)
    figure = go.Figure()
    figure.add_trace(go.Scatter(x=[0, 1], y=[0, 1], mode="lines", name="perfectly calibrated",
                                line=dict(dash="dot", color="grey")))
    figure.add_trace(go.Scatter(
        x=[b["confidence"] for b in bins], y=[b["accuracy"] for b in bins], mode="lines+markers",
        name="model", line=dict(color=ACCENT),
        marker=dict(size=(8 + 22 * np.sqrt(sizes / sizes.max())).tolist()),
        customdata=[[b["n"]] for b in bins],
        hovertemplate="confidence %{x:.0%}: right %{y:.0%} of %{customdata[0]} images"
                      "<extra></extra>"))
    figure.update_xaxes(title="stated confidence", tickformat=".0%", range=[0, 1.02])
    figure.update_yaxes(title="share right", tickformat=".0%", range=[0, 1.02])
    figure.update_layout(title=title, legend=dict(orientation="h", y=-0.25))
    return _compact(figure, 360)


# Quiz and instructor view ----------------------------------------------------------------------

HUMAN_COLOUR = "#1f77b4"
MODEL_COLOUR = "#ff7f0e"


def class_accuracy_bars(table: pd.DataFrame, title: str = "Accuracy per cell type",
                        who: str = "You") -> go.Figure:
    """Grouped bars of the student's (and the model's) accuracy per class from `quiz.class_accuracy`."""
    shown = table[table["answered"] > 0]
    figure = go.Figure()
    figure.add_bar(x=shown["cell"], y=shown["accuracy"], name=who, marker_color=HUMAN_COLOUR,
                   text=[f"{value:.0%}" for value in shown["accuracy"]], textposition="outside",
                   customdata=shown[["correct", "answered"]],
                   hovertemplate="%{x}: %{y:.0%} (%{customdata[0]}/%{customdata[1]})<extra></extra>")
    if shown["model_accuracy"].notna().any():
        figure.add_bar(x=shown["cell"], y=shown["model_accuracy"], name="Model",
                       marker_color=MODEL_COLOUR, textposition="outside",
                       text=[f"{value:.0%}" if value == value else "" for value in
                             shown["model_accuracy"]], hovertemplate="%{x}: %{y:.0%}<extra>Model</extra>")
    figure.update_layout(title=title, barmode="group", yaxis=dict(range=[0, 1.12], tickformat=".0%"),
                         margin=dict(l=10, r=10, t=50, b=10), height=340)
    return figure


def score_histogram(accuracies: Sequence[float], title: str = "Score distribution") -> go.Figure:
    """Histogram of students' accuracies (0-1) in 10% bins."""
    figure = go.Figure(go.Histogram(
        x=list(accuracies), xbins=dict(start=0, end=1.0001, size=0.1), marker_color=HUMAN_COLOUR,
        hovertemplate="%{x}: %{y} student(s)<extra></extra>",
    ))
    figure.update_layout(title=title, xaxis=dict(title="Accuracy", tickformat=".0%", range=[0, 1]),
                         yaxis_title="Students", bargap=0.05, margin=dict(l=10, r=10, t=50, b=10),
                         height=320)
    return figure


def human_vs_model_bars(result, title: str = "Human vs Model") -> go.Figure:
    """Right answers of the human(s) and the model on the same images, and who beat whom."""
    figure = go.Figure()
    categories = ["Both right", "Only human right", "Only model right", "Both wrong"]
    counts = [result.both_correct, result.human_only, result.model_only, result.neither]
    figure.add_bar(x=categories, y=counts, marker_color=["#2ca02c", HUMAN_COLOUR, MODEL_COLOUR,
                                                          "#d62728"],
                   hovertemplate="%{x}: %{y} image(s)<extra></extra>")
    figure.update_layout(title=f"{title}: human {result.human_correct}/{result.answered}, "
                               f"model {result.model_correct}/{result.answered}",
                         yaxis_title="Answers", margin=dict(l=10, r=10, t=50, b=10), height=320)
    return figure



def class_errors_heatmap(table: pd.DataFrame, title: str = "Which cells the class keeps missing",
                         period: str = "day") -> go.Figure:
    """Error rate per cell type (rows) and period (columns) from `quiz.class_errors_over_time`;
    each cell shows wrong / answered, blank where that class was not asked."""
    cells = sorted(table["cell"].unique())
    periods = sorted(table["period"].unique())
    index = {(row.period, row.cell): row for row in table.itertuples()}
    rates = [[index[(p, cell)].error_rate if (p, cell) in index else None for p in periods]
             for cell in cells]
    text = [[f"{index[(p, cell)].wrong}/{index[(p, cell)].answered}" if (p, cell) in index else ""
             for p in periods] for cell in cells]
    figure = go.Figure(go.Heatmap(
        z=rates, x=periods, y=cells, text=text, texttemplate="%{text}", zmin=0, zmax=1,
        colorscale=[[0, "#f7f4f5"], [1, ACCENT]], colorbar=dict(title="wrong", tickformat=".0%"),
        hovertemplate="%{y}, %{x}: %{z:.0%} wrong (%{text})<extra></extra>", xgap=2, ygap=2))
    figure.update_xaxes(type="category", title="week of" if period == "week" else "day (UTC)")
    figure.update_yaxes(autorange="reversed")  # first cell type at the top, as in a table
    figure.update_layout(title=title)
    return _compact(figure, 90 + 34 * max(len(cells), 1))

# Dataset explorer -----------------------------------------------------------------------------

SPLIT_COLOURS = {"train": "#9db4d3", "val": "#f2b880", "test": "#4c72b0", "all": "#4c72b0"}
CLASS_COLOURS = ("#4c72b0", "#dd8452", "#55a868", "#c44e52", "#8172b3", "#937860", "#da8bc3",
                 "#8c8c8c", "#ccb974", "#64b5cd")
MAP_POINT_LIMIT = 20_000  # more points than this are thinned on the map (never the errors)


def class_distribution_chart(counts: pd.DataFrame, names: Mapping[str, str],
                             highlight: str | None = None) -> go.Figure:
    """Grouped bars: images per class (rows of `counts`) for each split (its columns)."""
    figure = go.Figure()
    labels = [names.get(label, label) for label in counts.index]
    for split in counts.columns:
        chosen = highlight is None or split == highlight
        figure.add_bar(x=labels, y=counts[split].tolist(), name=split,
                       marker_color=SPLIT_COLOURS.get(split, "#4c72b0"),
                       opacity=1.0 if chosen else 0.45,
                       hovertemplate="%{x}: %{y} images<extra>" + split + "</extra>")
    figure.update_layout(barmode="group", height=280, margin=dict(l=10, r=10, t=30, b=10),
                         yaxis_title="images", legend_title_text="split",
                         title_text="Images per class")
    return figure


def confusion_matrix_chart(confusion: pd.DataFrame, names: Mapping[str, str],
                           selected: tuple[str, str] | None = None) -> go.Figure:
    """Heatmap of counts (true rows, predicted columns); click a cell to select its images.

    Plotly heatmaps do not report clicks as selections, so each cell also holds an almost
    invisible square marker whose customdata is [true label, predicted label].
    """
    rows = [names.get(label, label) for label in confusion.index]
    columns = [names.get(label, label) for label in confusion.columns]
    values = confusion.to_numpy()
    # Colour by share of each true class, so small classes are as readable as large ones.
    totals = values.sum(axis=1, keepdims=True)
    shares = np.divide(values, totals, out=np.zeros(values.shape, float), where=totals > 0)
    figure = go.Figure(go.Heatmap(
        z=shares, x=columns, y=rows, text=values, texttemplate="%{text}", colorscale="Blues",
        zmin=0, zmax=1, colorbar=dict(title="share of row"), hoverinfo="skip",
    ))
    # The markers take the hover and the clicks (a skipped hover would also skip the click).
    grid_y, grid_x = np.meshgrid(np.arange(len(rows)), np.arange(len(columns)), indexing="ij")
    figure.add_scatter(
        x=[columns[i] for i in grid_x.ravel()], y=[rows[i] for i in grid_y.ravel()],
        mode="markers", marker=dict(symbol="square", size=28, opacity=0.01, color="#000"),
        customdata=[[confusion.index[r], confusion.columns[c]]
                    for r, c in zip(grid_y.ravel(), grid_x.ravel())],
        text=[str(v) for v in values.ravel()],
        hovertemplate="true %{y}, predicted %{x}: %{text} images<extra></extra>",
        showlegend=False,
    )
    if selected is not None and selected[0] in confusion.index and selected[1] in confusion.columns:
        figure.add_scatter(x=[names.get(selected[1], selected[1])],
                           y=[names.get(selected[0], selected[0])], mode="markers",
                           marker=dict(symbol="square-open", size=34, color="#d62728",
                                       line=dict(width=3)),
                           hoverinfo="skip", showlegend=False)
    figure.update_layout(
        height=120 + 38 * len(rows), margin=dict(l=10, r=10, t=30, b=10),
        xaxis=dict(title="predicted", side="bottom"),
        yaxis=dict(title="true", autorange="reversed"),
        title_text="Confusion matrix (click a cell)", clickmode="event+select",
    )
    return figure


def feature_map_chart(table: pd.DataFrame, names: Mapping[str, str],
                      explained_variance: Sequence[float] = (0.0, 0.0),
                      selected_row: int | None = None) -> go.Figure:
    """Scatter of the 2-D feature map coloured by true class; wrong predictions drawn as crosses.

    `table` needs columns x, y, label, predicted, correct; its index (the row number) is each
    point's customdata, so a selection leads back to the image.
    """
    rows = table.index.to_numpy()
    x, y = table["x"].to_numpy(), table["y"].to_numpy()
    labels = table["label"].to_numpy()
    predicted = table["predicted"].to_numpy()
    correct = table["correct"].to_numpy(dtype=bool)
    keep = np.ones(len(table), dtype=bool)
    if len(table) > MAP_POINT_LIMIT:  # thin the right answers evenly, keep every mistake
        step = int(np.ceil(correct.sum() / max(1, MAP_POINT_LIMIT - (~correct).sum())))
        keep = ~correct | (np.cumsum(correct) % step == 1)
    figure = go.Figure()
    for number, label in enumerate(sorted(set(labels))):
        colour = CLASS_COLOURS[number % len(CLASS_COLOURS)]
        name = names.get(label, label)
        of_class = keep & (labels == label)
        right, wrong = of_class & correct, of_class & ~correct
        if right.any():
            figure.add_scattergl(
                x=x[right], y=y[right], customdata=rows[right], mode="markers", name=name,
                legendgroup=label, marker=dict(color=colour, size=5, opacity=0.55),
                hovertemplate=f"{name}, predicted correctly<extra>row %{{customdata}}</extra>")
        if wrong.any():
            figure.add_scattergl(
                x=x[wrong], y=y[wrong], customdata=rows[wrong], mode="markers",
                name=f"{name} (wrong)", legendgroup=label,
                hovertext=[names.get(p, p) for p in predicted[wrong]],
                marker=dict(color=colour, size=8, symbol="x", opacity=0.95),
                hovertemplate=f"{name} → %{{hovertext}}<extra>row %{{customdata}}</extra>")
    if selected_row is not None and selected_row in table.index:
        point = table.loc[selected_row]
        figure.add_scattergl(x=[point["x"]], y=[point["y"]], mode="markers", showlegend=False,
                             marker=dict(symbol="circle-open", size=18, color="#d62728",
                                         line=dict(width=3)), hoverinfo="skip")
    first, second = (list(explained_variance) + [0.0, 0.0])[:2]
    figure.update_layout(
        height=600, margin=dict(l=10, r=10, t=30, b=10), clickmode="event+select",
        title_text="Map of the model's features (PCA; crosses: wrong predictions)",
        xaxis_title=f"component 1 ({first:.0%} of variance)",
        yaxis_title=f"component 2 ({second:.0%} of variance)",
        legend=dict(itemsizing="constant", orientation="h", yanchor="top", y=-0.15),
    )
    return figure


# Transfer Learning Lab ------------------------------------------------------------------------

SOURCE_COLOURS = {"imagenet": "#4c72b0", "random": "#8c8c8c", "finetuned": ACCENT}


def learning_curve_chart(curves: Mapping[str, Sequence[tuple[int, float]]],
                         names: Mapping[str, str], chance: float | None = None,
                         chosen: int | None = None) -> go.Figure:
    """Accuracy against k examples per class (log axis), one line per feature source."""
    figure = go.Figure()
    for source, points in curves.items():
        shots = [int(k) for k, _ in points]
        accuracies = [float(a) for _, a in points]
        figure.add_trace(go.Scatter(
            x=shots, y=accuracies, mode="lines+markers", name=names.get(source, source),
            line=dict(color=SOURCE_COLOURS.get(source)),
            hovertemplate="k = %{x}: %{y:.1%}<extra>" + names.get(source, source) + "</extra>"))
    if chance is not None:
        figure.add_hline(y=chance, line_dash="dot", line_color="grey",
                         annotation_text="chance", annotation_position="bottom right")
    if chosen is not None:
        figure.add_vline(x=chosen, line_dash="dash", line_color="#d62728",
                         annotation_text=f"k = {chosen}", annotation_position="top left")
    figure.update_xaxes(title="examples per class (k)", type="log",
                        tickvals=sorted({int(k) for points in curves.values() for k, _ in points}))
    figure.update_yaxes(title="accuracy on the other images", tickformat=".0%", range=[0, 1.02])
    figure.update_layout(title="Learning curve: a new head on frozen features",
                         legend=dict(orientation="h", y=-0.25))
    return _compact(figure, 380)


def class_map_chart(coords: np.ndarray, labels: Sequence[str], names: Mapping[str, str],
                    title: str, explained_variance: Sequence[float] = (0.0, 0.0)) -> go.Figure:
    """A 2-D map (PCA) of features, one colour per class."""
    coords = np.asarray(coords, dtype=float)
    labels = np.asarray(labels)
    if len(coords) != len(labels):
        raise ValueError("coords and labels differ in length")
    figure = go.Figure()
    for number, label in enumerate(sorted(set(labels.tolist()))):
        of_class = labels == label
        name = names.get(label, label)
        figure.add_scattergl(x=coords[of_class, 0], y=coords[of_class, 1], mode="markers",
                             name=name, marker=dict(color=CLASS_COLOURS[number % len(CLASS_COLOURS)],
                                                    size=5, opacity=0.7),
                             hovertemplate=f"{name}<extra></extra>")
    first, second = (list(explained_variance) + [0.0, 0.0])[:2]
    figure.update_layout(title=title, xaxis_title=f"component 1 ({first:.0%} of variance)",
                         yaxis_title=f"component 2 ({second:.0%} of variance)",
                         legend=dict(itemsizing="constant", orientation="h", y=-0.2))
    return _compact(figure, 440)
