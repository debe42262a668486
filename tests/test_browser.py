"""End to end in a real browser: one journey per user, against a real server (`serve.py`).

AppTest runs the scripts but not the frontend, so layout, navigation between pages, forms,
downloads and plotly clicks slipped through it (issue 12). These tests drive Debian's chromium
through chromedriver (Selenium) against the shipped models and the real data, and skip only
when chromium or its driver is not installed (`.ci/run` installs both). A failing journey
leaves a screenshot under `var/browser/failures/`; every page is also captured at desktop and
phone width under `var/browser/pages/`, for a person to look at.
"""

from __future__ import annotations

import contextlib
import csv
import os
import shutil
import socket
import threading
import time
from dataclasses import replace
from pathlib import Path

import pytest

from benchmarks.server import start_server, stop_server, wait_healthy
from hematovision_core import storage
from hematovision_core.heatmap import MIDDLE_LAYER

REPO_ROOT = Path(__file__).resolve().parent.parent
SHOTS = REPO_ROOT / "var" / "browser"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")
PASSWORD = "lecture-hall-7"
DESKTOP = (1366, 900)
PHONE = (390, 844)  # an iPhone 12-15's CSS viewport
WAIT = 60  # seconds for a page run; the first render of a page imports its modules
PAGES = {"Home": "", "Classify": "Classify", "Quiz": "Quiz", "Dataset Explorer": "Dataset_Explorer",
         "Instructor": "Instructor"}

pytestmark = pytest.mark.skipif(not (CHROMIUM and CHROMEDRIVER),
                                reason="chromium and chromium-driver are not installed")


# --- the server and the browser -----------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def precompute_explorer_split(settings) -> None:
    """What a first visit to the explorer would start: pbc-8class on its test split (~20 s with
    ONNX Runtime), so the trainee's journey finds outcomes, errors and the map ready."""
    from hematovision_core import explorer, split_predictions
    from hematovision_core.predict import Classifier

    classifier = Classifier.load(settings.models_dir / "pbc-8class")
    source = explorer.split_source(settings.data_dir, classifier, "pbc", "test")
    split_predictions.compute(settings.cache_dir, classifier, source)


@pytest.fixture(scope="module")
def server_env(shared_data, tmp_path_factory) -> dict[str, str]:
    """The server's environment: the shipped models, the real data, and a fresh var folder and
    quiz database."""
    var = tmp_path_factory.mktemp("browser-var")
    return dict(os.environ, HEMATOVISION_DATA=str(shared_data),
                HEMATOVISION_MODELS=str(REPO_ROOT / "models"), HEMATOVISION_VAR=str(var),
                HEMATOVISION_DB=str(var / "quiz.sqlite3"),
                HEMATOVISION_INSTRUCTOR_PASSWORD=PASSWORD)


@pytest.fixture(scope="module")
def app_url(server_env):
    """A real server on a free port (README's command: replicas behind nginx where installed)."""
    from hematovision_core.config import Settings

    if not (REPO_ROOT / "models" / "pbc-8class" / "model.json").is_file():
        pytest.skip("the shipped models are not in models/")
    port = free_port()
    server = start_server(port, server_env)
    try:
        precompute_explorer_split(Settings.from_env(server_env))  # while the server warms up
        url = f"http://127.0.0.1:{port}"
        wait_healthy(url, timeout=180)
        yield url
    finally:
        stop_server(server)


@contextlib.contextmanager
def students_answering(url: str, server_env: dict[str, str], monkeypatch):
    """A few simulated students answering a quiz (the load tool, in a thread) while the block
    runs; yields the load's report, filled in once they are done (bounded: 60 s)."""
    from benchmarks.load import LoadOptions, run_load

    for name in ("HEMATOVISION_DATA", "HEMATOVISION_VAR", "HEMATOVISION_DB"):
        monkeypatch.setenv(name, server_env[name])  # where the load tool counts their answers
    report: dict = {}
    load = threading.Thread(target=lambda: report.update(run_load(LoadOptions(
        url, "quiz", sessions=4, answers=25, think_seconds=0.1, timeout=60))))
    load.start()
    try:
        deadline = time.monotonic() + 60
        while not any(code.quiz_code.startswith("LOAD-") and code.answers
                      for code in storage.quiz_codes(server_env["HEMATOVISION_DB"])):
            if time.monotonic() > deadline or not load.is_alive():
                raise TimeoutError(f"the simulated students never answered: {report}")
            time.sleep(0.2)
        yield report
    finally:
        load.join(timeout=90)


@pytest.fixture(scope="module")
def browser(app_url, tmp_path_factory):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    downloads = tmp_path_factory.mktemp("downloads")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--disable-dev-shm-usage",
                 f"--user-data-dir={tmp_path_factory.mktemp('chromium-profile')}",
                 f"--window-size={DESKTOP[0]},{DESKTOP[1]}"):
        options.add_argument(flag)
    options.add_experimental_option("prefs", {"download.default_directory": str(downloads),
                                              "download.prompt_for_download": False})
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.execute_cdp_cmd("Browser.setDownloadBehavior",
                           {"behavior": "allow", "downloadPath": str(downloads)})
    driver.downloads = downloads
    try:
        yield driver
    finally:
        driver.quit()


def set_width(driver, size: tuple[int, int]) -> None:
    """Emulate a screen of this CSS size (a phone: mobile layout, touch-free)."""
    width, height = size
    driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", {
        "width": width, "height": height, "deviceScaleFactor": 1, "mobile": width < 600})


@contextlib.contextmanager
def journey(driver, name: str, size: tuple[int, int] = DESKTOP):
    """Run one user's journey at a screen size; on failure keep a screenshot of the moment."""
    set_width(driver, size)
    try:
        yield
    except BaseException:
        (SHOTS / "failures").mkdir(parents=True, exist_ok=True)
        driver.save_screenshot(str(SHOTS / "failures" / f"{name}.png"))
        raise


# --- Streamlit in the DOM -------------------------------------------------------------------------


def script_state(driver) -> str | None:
    return driver.execute_script(
        "const app = document.querySelector('[data-testid=\"stApp\"]');"
        "return app ? app.getAttribute('data-test-script-state') : null;")


def idle(driver, timeout: float = WAIT) -> None:
    """Wait until the script has finished running (and stayed finished for half a second)."""
    deadline, quiet = time.monotonic() + timeout, 0
    while quiet < 3:
        state = script_state(driver)
        quiet = quiet + 1 if state == "notRunning" else 0
        if time.monotonic() > deadline:
            raise TimeoutError(f"the page is still running after {timeout:.0f} s ({state})")
        time.sleep(0.2)


def after_action(driver) -> None:
    """After a click or a key: wait for the run it starts (if any starts within 2 s) to end."""
    deadline = time.monotonic() + 2
    while script_state(driver) == "notRunning" and time.monotonic() < deadline:
        time.sleep(0.05)
    idle(driver)


def open_page(driver, url: str, page: str = "") -> None:
    """A fresh session on a page (a new browser load is a new Streamlit session)."""
    driver.get(f"{url}/{page}")
    until(driver, lambda d: d.find_elements("css selector", "[data-testid='stApp']"))
    idle(driver)


def until(driver, condition, timeout: float = WAIT, message: str = ""):
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, timeout, poll_frequency=0.2).until(condition, message)


def keyed(driver, key: str, inner: str = ""):
    """The element of a widget or container with this `key` (Streamlit's `st-key-<key>` class)."""
    selector = f".st-key-{key} {inner}".strip()
    return until(driver, lambda d: d.find_element("css selector", selector),
                 message=f"no {selector}")


def click(driver, key: str, inner: str = "button") -> None:
    element = keyed(driver, key, inner)
    driver.execute_script("arguments[0].scrollIntoView({block: 'center'});", element)
    element.click()
    after_action(driver)


def type_into(driver, key: str, text: str, commit: str = "\n") -> None:
    from selenium.webdriver.common.keys import Keys

    field = keyed(driver, key, "input")
    field.send_keys(Keys.CONTROL, "a")
    field.send_keys(Keys.DELETE)
    field.send_keys(text + commit)
    after_action(driver)


def choose(driver, key: str, option: str) -> None:
    """Pick an option of a selectbox by typing its label (as a keyboard user would)."""
    type_into(driver, key, option)


def pick_radio(driver, key: str, label: str) -> None:
    option = until(driver, lambda d: next(
        (o for o in d.find_elements("css selector", f".st-key-{key} label") if o.text == label),
        None), message=f"no radio option {label!r}")
    option.click()
    after_action(driver)


def texts(driver, selector: str) -> list[str]:
    return [element.text for element in driver.find_elements("css selector", selector)]


def page_text(driver) -> str:
    return driver.find_element("css selector", "[data-testid='stMain']").text


def wait_text(driver, text: str, timeout: float = WAIT) -> None:
    until(driver, lambda d: text in page_text(d), timeout, f"{text!r} never appeared")


def navigate(driver, page: str) -> None:
    """Go to another page through the sidebar's navigation: the same session, as a user does."""
    link = until(driver, lambda d: next(
        (a for a in d.find_elements("css selector", "[data-testid='stSidebarNavLink']")
         if a.text.strip() == page), None), message=f"no link to {page}")
    link.click()
    after_action(driver)


def selected(driver, key: str) -> str:
    """The option a selectbox shows (its combobox input's value)."""
    return keyed(driver, key, "input[role='combobox']").get_attribute("value")


def sidebar_model(driver) -> str:
    return selected(driver, "model_name")


def wait_download(folder: Path, pattern: str, timeout: float = 30) -> Path:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        done = [p for p in folder.glob(pattern) if not p.name.endswith(".crdownload")]
        if done:
            return done[0]
        time.sleep(0.2)
    raise TimeoutError(f"no {pattern} downloaded into {folder}")


def start_quiz(driver, mode: str, code: str = "", length: int | None = None) -> None:
    type_into(driver, "nickname", "ana")
    if code:
        type_into(driver, "quiz_code", code)
    pick_radio(driver, "mode", {"practice": "Practice", "exam": "Exam"}[mode])
    if length:
        type_into(driver, "length", str(length))
    click(driver, "start")
    until(driver, lambda d: d.find_elements("css selector", ".st-key-quiz_answers button"),
          message="no question")


def answer_buttons(driver):
    return driver.find_elements("css selector", ".st-key-quiz_answers button")


def answer_first(driver) -> None:
    button = answer_buttons(driver)[0]
    driver.execute_script("arguments[0].scrollIntoView({block: 'nearest'});", button)
    button.click()
    after_action(driver)


# --- the journeys ---------------------------------------------------------------------------------


def test_student_practises_with_feedback_then_sits_an_exam_with_a_code(browser, app_url):
    with journey(browser, "student"):
        open_page(browser, app_url, "Quiz")
        start_quiz(browser, "practice")
        answer_first(browser)
        until(browser, lambda d: any(v.startswith(("Right:", "Not quite:")) for v in texts(
            d, "[data-testid='stAlertContainer']")), message="no verdict")
        assert "The model says" in page_text(browser)
        heatmap = until(browser, lambda d: next(
            (i for i in d.find_elements("css selector", "[data-testid='stImage']")
             if "Where the model looked" in i.text), None), message="no heatmap")
        assert heatmap.find_element("css selector", "img").get_attribute("naturalWidth") != "0"
        click(browser, "next")
        assert "Question 2" in page_text(browser)

        click(browser, "new_quiz")
        start_quiz(browser, "exam", code="hall-1", length=5)
        assert "HALL-1" in page_text(browser)
        for number in range(5):
            wait_text(browser, f"Question {number + 1} of 5")
            assert not texts(browser, "[data-testid='stAlertContainer']")  # no feedback in an exam
            answer_first(browser)
        wait_text(browser, "Review:")
        assert "Results" in page_text(browser)


def test_instructor_logs_in_after_a_wrong_password_and_downloads_the_codes_answers(
        browser, app_url, server_env, monkeypatch):
    with journey(browser, "instructor"):
        open_page(browser, app_url, "Instructor")
        type_into(browser, "instructor_password", "not-the-password", commit="")
        click(browser, "instructor_login_button")  # a button, not only Enter
        wait_text(browser, "rong")  # "Wrong password..."
        type_into(browser, "instructor_password", PASSWORD, commit="")
        click(browser, "instructor_login_button")
        wait_text(browser, "Most confused pairs")
        choose(browser, "instructor_code", "HALL-1")
        assert "HALL-1" in selected(browser, "instructor_code")
        assert "UTC" in selected(browser, "instructor_code")  # a readable time, not ISO 8601
        metrics = dict(zip(texts(browser, "[data-testid='stMetricLabel']"),
                           texts(browser, "[data-testid='stMetricValue']")))
        assert metrics["Answers"] == "5" and metrics["Students"] == "1"
        click(browser, "export_csv_prepare")
        # Every script run of any session sweeps the files no session refers to: a CSV handed
        # out as Streamlit's deferred download was gone before the browser fetched it.
        with students_answering(app_url, server_env, monkeypatch) as load:
            click(browser, "export_csv")
            download = wait_download(browser.downloads, "quiz-HALL-1*.csv")
        rows = list(csv.DictReader(download.read_text(encoding="utf-8-sig").splitlines()))
        assert len(rows) == 5 and {row["quiz_code"] for row in rows} == {"HALL-1"}
        assert load["error_count"] == 0 and load["answers_stored"] == 4 * 25, load["errors"]

        # Live: a late student's answer reaches the figures with no click of the instructor's.
        click(browser, "instructor_live", "label")
        database = server_env["HEMATOVISION_DB"]
        late = replace(storage.load_answers(database, quiz_code="HALL-1")[0],
                       session_id="late-student", nickname="late")
        storage.save_answers(database, [late])
        until(browser, lambda d: dict(zip(texts(d, "[data-testid='stMetricLabel']"),
                                          texts(d, "[data-testid='stMetricValue']"))).get(
            "Answers") == "6", timeout=30, message="the live view never showed the new answer")
        assert "Updated" in page_text(browser)
        assert selected(browser, "instructor_code_live") == "HALL-1"  # no counts to fall behind


def test_trainee_browses_a_class_opens_an_image_and_picks_a_confusion_cell(browser, app_url):
    from selenium.webdriver.common.action_chains import ActionChains

    with journey(browser, "trainee"):
        open_page(browser, app_url, "Dataset_Explorer")
        wait_text(browser, "Basophil (")  # the first class's gallery, with its count
        views = until(browser, lambda d: d.find_elements(
            "css selector", "[class*='st-key-explorer_view_browse_'] button"))
        assert "✓" in page_text(browser) or "✗" in page_text(browser)  # outcomes are cached
        views[0].click()
        after_action(browser)
        wait_text(browser, "model says")
        assert "Run the model" not in page_text(browser)  # no leftover button once computed

        tab = until(browser, lambda d: next(
            (t for t in d.find_elements("css selector", "[role='tab']")
             if "Where the model errs" in t.text), None))
        tab.click()
        after_action(browser)
        chart = keyed(browser, "explorer_confusion", ".js-plotly-plot")
        browser.execute_script("arguments[0].scrollIntoView({block: 'nearest'});", chart)
        # An off-diagonal cell: row 7 (Neutrophil), column 4 (Immature granulocyte) holds mistakes
        # in PBC's test split; click the centre of the cell's invisible marker.
        points = chart.find_elements("css selector", ".scatterlayer .trace:first-child .point")
        classes = 8
        target = points[6 * classes + 3]
        ActionChains(browser).move_to_element(target).click().perform()
        after_action(browser)
        true_label = selected(browser, "explorer_true")
        predicted = selected(browser, "explorer_predicted")
        assert "Neutrophil" in true_label and "Immature granulocyte" in predicted
        wait_text(browser, "matching the filters")


def test_lab_user_uploads_three_images_and_a_bad_file_and_downloads_the_report(
        browser, app_url, shared_data, tmp_path):
    with journey(browser, "lab-user"):
        images = [sorted((shared_data / "pbc" / cell).glob("*.jpg"))[0]
                  for cell in ("eosinophil", "lymphocyte", "neutrophil")]
        bad = tmp_path / "notes.png"
        bad.write_bytes(b"this is not an image")
        open_page(browser, app_url, "Classify")
        uploader = keyed(browser, "uploads", "input[type='file']")
        uploader.send_keys("\n".join(str(path) for path in [*images, bad]))
        wait_text(browser, "3 images", timeout=90)
        idle(browser)
        assert "notes.png" in " ".join(texts(browser, "[data-testid='stAlertContainer']"))
        table = keyed(browser, "results_table")
        assert table.is_displayed()
        for header in ("Prediction", "Confidence", "Runner-up"):
            assert header in table.text or table.get_attribute("innerHTML").count(header)
        # A middle-layer Grad-CAM needs gradients: TensorFlow in the heatmap workers, which
        # README's command shares between its replicas (explain_pool.share).
        pick_radio(browser, "depth", "middle")
        wait_text(browser, f"Overlay (layer {MIDDLE_LAYER})", timeout=120)
        click(browser, "report_prepare")
        click(browser, "report")
        report = wait_download(browser.downloads, "hematovision-report-*.html")
        assert "<img" in report.read_text(encoding="utf-8")


def test_the_model_chosen_on_home_holds_on_every_page_and_a_quiz_survives_a_visit(browser,
                                                                                  app_url):
    with journey(browser, "model-and-quiz"):
        open_page(browser, app_url)
        choose(browser, "model_name", "blood-cells-4class")
        wait_text(browser, "Model card: blood-cells-4class")
        for page in ("Classify", "Quiz", "Dataset Explorer", "Home"):
            navigate(browser, page)
            assert sidebar_model(browser) == "blood-cells-4class", page
        navigate(browser, "Quiz")
        start_quiz(browser, "practice", code="WALK-1")
        answer_first(browser)
        click(browser, "next")
        wait_text(browser, "Question 2")
        navigate(browser, "Home")
        navigate(browser, "Quiz")
        wait_text(browser, "Question 2")
        assert "WALK-1" in page_text(browser) and "started over" not in page_text(browser)
        assert sidebar_model(browser) == "blood-cells-4class"


def to_top(driver) -> None:
    driver.execute_script("window.scrollTo(0, 0); for (const e of document.querySelectorAll("
                          "'[data-testid=\"stMain\"], [data-testid=\"stAppViewContainer\"]'))"
                          " e.scrollTop = 0;")


def box(driver, element) -> dict:
    """Where an element is on the screen now (CSS pixels from the viewport's top left)."""
    return driver.execute_script("const r = arguments[0].getBoundingClientRect();"
                                 "return {top: r.top, bottom: r.bottom};", element)


def overflow(driver) -> int:
    """How many CSS pixels the page is wider than the screen (0: no sideways scrolling)."""
    return driver.execute_script(
        "const main = document.querySelector('[data-testid=\"stMain\"]');"
        "return Math.max(document.documentElement.scrollWidth, main ? main.scrollWidth : 0)"
        " - window.innerWidth;")


def test_at_phone_width_nothing_overflows_and_a_question_fits_the_first_screen(browser, app_url):
    with journey(browser, "phone", PHONE):
        (SHOTS / "pages").mkdir(parents=True, exist_ok=True)
        for name, page in PAGES.items():
            open_page(browser, app_url, page)
            time.sleep(1)  # charts and images lay themselves out after the run
            browser.save_screenshot(str(SHOTS / "pages" / f"{page or 'Home'}-phone.png"))
            assert overflow(browser) <= 0, f"{name} scrolls sideways by {overflow(browser)} px"
        open_page(browser, app_url, "Quiz")
        start_quiz(browser, "practice", code="PHONE-1")
        answer_first(browser)
        click(browser, "next")  # a question after one answer: the score line is there too
        to_top(browser)  # as a student sees a new question: from the top of the page
        time.sleep(1)
        browser.save_screenshot(str(SHOTS / "pages" / "Quiz-question-phone.png"))
        screen = browser.execute_script("return window.innerHeight;")
        image = keyed(browser, "quiz_image", "img")
        bottoms = [box(browser, element)["bottom"] for element in [image, *answer_buttons(browser)]]
        assert max(bottoms) <= screen, f"image and answers reach {max(bottoms):.0f} px of {screen}"
        answer_first(browser)
        verdict = until(browser, lambda d: d.find_element(
            "css selector", "[data-testid='stAlertContainer']"))
        assert 0 <= box(browser, verdict)["top"] < screen, "the verdict is off the first screen"
        browser.save_screenshot(str(SHOTS / "pages" / "Quiz-feedback-phone.png"))
        assert overflow(browser) <= 0


def test_every_page_at_desktop_width_is_captured_for_a_person_to_look_at(browser, app_url):
    with journey(browser, "desktop-pages"):
        (SHOTS / "pages").mkdir(parents=True, exist_ok=True)
        for page in PAGES.values():
            open_page(browser, app_url, page)
            time.sleep(1)
            browser.save_screenshot(str(SHOTS / "pages" / f"{page or 'Home'}-desktop.png"))
            assert overflow(browser) <= 0
