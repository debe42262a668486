"""The dashboard's process never imports keras or tensorflow.

Streamlit calls `keras.backend.clear_session()` after every script run once keras is imported
(0.2 s each, and a reset of Keras' state under other sessions' threads), so the served process
must not import it, whatever the pages do. A fresh interpreter runs every page through AppTest,
with a classification, a quiz answer with its heatmap, Review mode, the explorer, the instructor
view and the transfer-learning lab, and reports the modules it imported; only the worker
processes (heatmaps, the lab's features) may load TensorFlow.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent

SCRIPT = textwrap.dedent("""
    import json, sys
    from pathlib import Path
    from streamlit.testing.v1 import AppTest

    pages, image = Path(sys.argv[1]), Path(sys.argv[2])
    ran = {}
    def run(name, act=None):
        at = AppTest.from_file(str(pages / name), default_timeout=120).run()
        if act:
            act(at)
        ran[name] = [str(e.value) for e in at.exception]

    run("Home.py")
    run("pages/1_Classify.py", lambda at: at.file_uploader(key="uploads").set_value(
        [(image.name, image.read_bytes(), "image/jpeg")]).run())
    def quiz(at):
        at.text_input(key="nickname").input("ana")
        at.radio(key="mode").set_value("practice")
        at.button(key="start").click().run()
        next(b for b in at.button if b.key and b.key.startswith("answer_")).click().run()
        at.button(key="new_quiz").click().run()  # then Review mode, with a kept nickname
        at.checkbox(key="keep_nickname").check()
        at.button(key="start_review").click().run()
    run("pages/2_Quiz.py", quiz)
    run("pages/3_Dataset_Explorer.py")
    run("pages/4_Instructor.py")
    run("pages/5_Transfer_Learning_Lab.py", lambda at: at.slider(key="lab_k").set_value(2).run())
    heavy = sorted(m for m in sys.modules if m.split(".")[0] in ("keras", "tensorflow", "tf2onnx"))
    print(json.dumps({"exceptions": ran, "heavy_modules": heavy[:20]}))
""")


def test_no_page_imports_keras_or_tensorflow(owning_model_folder, small_data, tmp_path):
    env = {**os.environ,
           "HEMATOVISION_MODELS": str(owning_model_folder.parent),
           "HEMATOVISION_DATA": str(small_data),
           "HEMATOVISION_VAR": str(tmp_path / "var"),
           "HEMATOVISION_INSTRUCTOR_PASSWORD": "not-used-here",
           "PYTHONPATH": str(REPO_ROOT)}
    image = next((small_data / "pbc" / "neutrophil").iterdir())
    script = tmp_path / "run_pages.py"
    script.write_text(SCRIPT)
    done = subprocess.run([sys.executable, str(script), str(REPO_ROOT), str(image)], env=env,
                          cwd=REPO_ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report["exceptions"] == {name: [] for name in report["exceptions"]}
    assert len(report["exceptions"]) == 6
    assert report["heavy_modules"] == [], f"the served process imported {report['heavy_modules']}"
