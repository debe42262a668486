"""The app `serve.py` runs: Streamlit's own, on `Home.py` and `pages/`, with the frontend's static
files answered from memory first (`static_assets`).

`st.App` is Streamlit's documented way to add middleware; `streamlit run served_app.py` finds
`app` and serves it with uvicorn under the same `.streamlit/config.toml`. Run it through
`serve.py`, which loads and warms the models first. `streamlit run Home.py` (development) serves
the same pages without the middleware.
"""

from pathlib import Path

import streamlit as st
from starlette.middleware import Middleware

from static_assets import StaticAssets

app = st.App(Path(__file__).resolve().parent / "Home.py", middleware=[Middleware(StaticAssets)])
