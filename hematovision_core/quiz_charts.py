"""Plotly figures for the quiz and the instructor view; pages call `st.plotly_chart` on them."""

from __future__ import annotations

from typing import Sequence

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from hematovision_core.quiz import HumanVsModel

HUMAN_COLOUR = "#1f77b4"
MODEL_COLOUR = "#ff7f0e"


def confusion_heatmap(matrix: np.ndarray, labels: Sequence[str],
                      title: str = "Which cells you mistake for which") -> go.Figure:
    """Counts heatmap: rows the true cell, columns the answer given."""
    matrix = np.asarray(matrix).tolist()  # plain lists: readable in the figure's JSON
    labels = list(labels)
    figure = go.Figure(go.Heatmap(
        z=matrix, x=labels, y=labels, colorscale="Blues", text=matrix, texttemplate="%{text}",
        hovertemplate="true %{y}<br>answered %{x}<br>%{z} time(s)<extra></extra>", showscale=False,
    ))
    figure.update_layout(title=title, xaxis_title="Your answer", yaxis_title="True cell",
                         yaxis_autorange="reversed", margin=dict(l=10, r=10, t=50, b=10),
                         height=max(300, 60 + 40 * len(labels)))
    return figure


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


def human_vs_model_bars(result: HumanVsModel, title: str = "Human vs Model") -> go.Figure:
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
