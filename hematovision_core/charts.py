"""Plotly figures for the pages; each function returns a figure and only pages draw it."""

from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np
import plotly.graph_objects as go

ACCENT = "#8e244d"  # the theme's primary colour (haematoxylin-eosin magenta)
MUTED = "#b9a3ad"
TRAINING_STAGES = {"head": "head only", "fine_tune": "fine-tuning"}


def _compact(figure: go.Figure, height: int) -> go.Figure:
    figure.update_layout(height=height, margin=dict(l=10, r=10, t=40, b=10),
                         template="plotly_white")
    return figure


def probability_bars(probabilities: Sequence[float], display_names: Sequence[str],
                     highlight: int | None = None, title: str = "Class probabilities") -> go.Figure:
    """Horizontal bars of every class's probability, best at the top; `highlight` in accent."""
    probabilities = np.asarray(probabilities, dtype=float)
    if len(probabilities) != len(display_names):
        raise ValueError("probabilities and display_names differ in length")
    highlight = int(np.argmax(probabilities)) if highlight is None else highlight
    order = np.argsort(probabilities)  # ascending: plotly draws the last bar at the top
    figure = go.Figure(go.Bar(
        x=probabilities[order],
        y=[display_names[i] for i in order],
        orientation="h",
        marker_color=[ACCENT if i == highlight else MUTED for i in order],
        text=[f"{p:.1%}" for p in probabilities[order]],
        textposition="outside",
        hovertemplate="%{y}: %{x:.1%}<extra></extra>",
    ))
    figure.update_xaxes(range=[0, 1.15], tickformat=".0%", title=None)
    figure.update_layout(title=title)
    return _compact(figure, 70 + 32 * len(display_names))


def differential_chart(shares: Mapping[str, float], title: str = "Differential") -> go.Figure:
    """Share of each cell type among classified images, as horizontal bars."""
    names = list(shares)
    values = np.array([shares[name] for name in names], dtype=float)
    figure = go.Figure(go.Bar(
        x=values, y=names, orientation="h", marker_color=ACCENT,
        text=[f"{v:.0%}" for v in values], textposition="outside",
        hovertemplate="%{y}: %{x:.1%}<extra></extra>",
    ))
    figure.update_xaxes(range=[0, 1.15], tickformat=".0%")
    figure.update_yaxes(autorange="reversed")  # model order, top to bottom
    figure.update_layout(title=title)
    return _compact(figure, 70 + 32 * len(names))


def confusion_matrix_heatmap(matrix: Sequence[Sequence[int]], display_names: Sequence[str],
                             title: str = "Confusion matrix") -> go.Figure:
    """Rows = true class, columns = predicted; colour = share of the row, text = counts."""
    counts = np.asarray(matrix, dtype=float)
    if counts.shape != (len(display_names), len(display_names)):
        raise ValueError(f"a {len(display_names)}-class confusion matrix must be square, "
                         f"got shape {counts.shape}")
    row_share = counts / np.maximum(counts.sum(axis=1, keepdims=True), 1)  # recall per row
    figure = go.Figure(go.Heatmap(
        z=row_share, x=list(display_names), y=list(display_names),
        text=counts.astype(int), texttemplate="%{text}", colorscale="RdPu", zmin=0, zmax=1,
        colorbar=dict(title="share of row", tickformat=".0%"),
        hovertemplate="true %{y}, predicted %{x}: %{text} (%{z:.0%} of row)<extra></extra>",
    ))
    figure.update_xaxes(title="predicted", side="bottom")
    figure.update_yaxes(title="true", autorange="reversed")
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
    figure.update_xaxes(title="epoch", dtick=1)
    figure.update_yaxes(title=None, tickformat=".0%", range=[0, 1.02])
    figure.update_layout(title="Training curves", legend=dict(orientation="h", y=-0.25))
    return _compact(figure, 360)
