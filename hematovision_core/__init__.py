"""HematoVision engine: data, preprocessing, model, training, evaluation and explanations.

Never imports streamlit: the dashboard in `Home.py` and `pages/` is a thin layer over this package.
"""

__version__ = "0.1.0"

# Shown on every page and in every report: one wording.
DISCLAIMER = ("HematoVision is a teaching tool, not a diagnostic device. "
              "Never use its output for patient care.")
