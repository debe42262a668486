"""Plotly figures for the dataset explorer; only pages call `st.plotly_chart` on them.

Interactive figures carry each point's identity in `customdata`, so a page can turn a selection
event back into rows: the confusion matrix's cells carry (true label, predicted label) and the
map's points carry their row number in the prediction table.
"""

from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np
import pandas as pd
import plotly.graph_objects as go

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
