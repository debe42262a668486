"""A one-file HTML report of a classification: images embedded as data URIs, no external links.

Probabilities are drawn as HTML bars (a plotly figure would need its JavaScript bundle or an
image export engine, neither of which is available offline).
"""

from __future__ import annotations

import base64
import html
import io
from datetime import datetime, timezone

import numpy as np
from PIL import Image

from hematovision_core import DISCLAIMER
from hematovision_core.batch import ImageResult
from hematovision_core.heatmap import Heatmap
from hematovision_core.model_card import version_line
from hematovision_core.model_io import ModelFolder
from hematovision_core.morphology import card_for
from hematovision_core.ood import NOTICE

STYLE = """
body { font-family: system-ui, sans-serif; margin: 2rem auto; max-width: 60rem; color: #222; }
h1 { color: #8e244d; } .muted { color: #666; font-size: 0.9rem; }
.images { display: flex; gap: 1rem; flex-wrap: wrap; } figure { margin: 0; }
img { max-width: 18rem; border: 1px solid #ddd; } figcaption { font-size: 0.85rem; color: #555; }
table { border-collapse: collapse; margin: 1rem 0; }
td, th { padding: 0.25rem 0.6rem; text-align: left; }
.bar { background: #b9a3ad; height: 0.9rem; } .top .bar { background: #8e244d; }
.notice { background: #fff4e5; border-left: 4px solid #e69500; padding: 0.5rem 1rem; }
.disclaimer { border-top: 1px solid #ddd; margin-top: 2rem; padding-top: 0.5rem; }
"""


def png_data_uri(image_rgb: np.ndarray) -> str:
    """uint8 RGB array -> 'data:image/png;base64,...'."""
    buffer = io.BytesIO()
    Image.fromarray(np.asarray(image_rgb, dtype=np.uint8)).save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def _probability_rows(result: ImageResult, display_names) -> str:
    rows = []
    for index in np.argsort(-result.prediction.probabilities):
        probability = float(result.prediction.probabilities[index])
        top = ' class="top"' if index == result.prediction.class_index else ""
        rows.append(
            f"<tr{top}><td>{html.escape(display_names[index])}</td><td>{probability:.1%}</td>"
            f'<td style="width:20rem"><div class="bar" style="width:{probability * 100:.1f}%">'
            "</div></td></tr>")
    return "\n".join(rows)


def _card_html(label: str) -> str:
    card = card_for(label)
    if card is None:
        return ""
    facts = (("Size", card.size), ("Nucleus", card.nucleus), ("Cytoplasm", card.cytoplasm),
             ("Granules", card.granules), ("Normal share", card.normal_share))
    if card.also_called:
        facts += (("Also called", card.also_called),)
    rows = "".join(f"<tr><th>{name}</th><td>{html.escape(value)}</td></tr>"
                   for name, value in facts)
    return f"<h2>{html.escape(card.display_name)}: morphology</h2><table>{rows}</table>"


def html_report(result: ImageResult, overlay_rgb: np.ndarray, heatmap: Heatmap,
                model: ModelFolder, created: datetime | None = None) -> str:
    """A self-contained HTML page: image, overlay, probabilities, model name and version, time."""
    created = created or datetime.now(timezone.utc)
    display_names = model.display_names
    prediction = result.prediction
    explained = display_names[heatmap.class_index]
    title = f"HematoVision report: {result.name}"
    true_label = ""
    if result.true_label:
        index = model.classes.index(result.true_label) \
            if result.true_label in model.classes else None
        shown = display_names[index] if index is not None else result.true_label
        true_label = f"<p>True label (from the data folder): <b>{html.escape(shown)}</b></p>"
    notice = (f'<p class="notice">{html.escape(result.uncertainty)}</p>'
              if result.uncertainty else "")
    if prediction.out_of_domain:
        notice = (f'<p class="notice"><b>Out of domain</b> (score {prediction.ood_score:.1f}): '
                  f"{html.escape(NOTICE)}</p>") + notice
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>{STYLE}</style></head>
<body>
<h1>{html.escape(title)}</h1>
<p class="muted">Created {created.strftime("%Y-%m-%d %H:%M:%S %Z")} with model
{html.escape(version_line(model))}</p>
<h2>Prediction: {html.escape(prediction.display_name)} ({prediction.confidence:.1%})</h2>
{true_label}{notice}
<div class="images">
<figure><img alt="image" src="{png_data_uri(result.image_rgb)}">
<figcaption>Image</figcaption></figure>
<figure><img alt="overlay" src="{png_data_uri(overlay_rgb)}">
<figcaption>{html.escape(heatmap.method)} evidence for {html.escape(explained)}
(layer {html.escape(heatmap.layer)})</figcaption></figure>
</div>
<h2>Probabilities (calibrated)</h2>
<table>{_probability_rows(result, display_names)}</table>
{_card_html(prediction.label)}
<p class="disclaimer muted">{html.escape(DISCLAIMER)}</p>
</body></html>
"""
