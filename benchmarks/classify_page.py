"""Time the Classify page in this (fresh) process with AppTest; print one JSON object.

Run by `benchmarks.app` in a new interpreter so the first render includes the imports and the
model load, as a first visit after `streamlit run Home.py` does (`serve.py` loads the models
before the first visit).

    python benchmarks/classify_page.py IMAGE [MODEL_NAME]
"""

from __future__ import annotations

import time

START = time.perf_counter()  # before streamlit and the runtime are imported

import json  # noqa: E402
import sys  # noqa: E402
from pathlib import Path  # noqa: E402

PAGE = str(Path(__file__).resolve().parent.parent / "pages" / "1_Classify.py")


def main(image: str, model_name: str | None = None) -> dict:
    from streamlit.testing.v1 import AppTest

    sys.path.insert(0, str(Path(PAGE).parent.parent))
    from hematovision_core.predict import Classifier

    calls = []
    original = Classifier.forward

    def counting_forward(self, *args, **kwargs):
        calls.append(1)
        return original(self, *args, **kwargs)

    Classifier.forward = counting_forward  # every forward pass, heatmaps' included

    at = AppTest.from_file(PAGE, default_timeout=300)
    if model_name:
        at.session_state["model_name"] = model_name
    tick = time.perf_counter()
    at.run()
    first_render_s = time.perf_counter() - tick
    first_render_from_process_start_s = time.perf_counter() - START
    errors = [str(e.value) for e in at.exception]

    at.file_uploader(key="uploads").set_value([(Path(image).name, Path(image).read_bytes(),
                                                "image/jpeg")])
    tick = time.perf_counter()
    at.run()
    upload_run_s = time.perf_counter() - tick
    heatmaps_after_upload = len(calls)

    at.slider(key="opacity").set_value(0.8)
    tick = time.perf_counter()
    at.run()
    opacity_run_s = time.perf_counter() - tick
    heatmaps_after_opacity = len(calls)
    errors += [str(e.value) for e in at.exception]
    return {
        "classify_first_render_s": round(first_render_s, 2),
        "classify_first_render_from_process_start_s": round(first_render_from_process_start_s, 2),
        "upload_rerun_s": round(upload_run_s, 2),
        "opacity_rerun_s": round(opacity_run_s, 2),
        "forward_passes_after_upload": heatmaps_after_upload,
        "forward_passes_after_opacity_change": heatmaps_after_opacity,
        "opacity_change_reran_the_model": heatmaps_after_opacity != heatmaps_after_upload,
        "exceptions": errors,
    }


if __name__ == "__main__":
    print(json.dumps(main(sys.argv[1], sys.argv[2] if len(sys.argv) > 2 else None)))
