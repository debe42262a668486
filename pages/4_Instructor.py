"""Instructor view: a lecture hall's quiz results per quiz code, behind a password."""

from __future__ import annotations

import uuid
from datetime import datetime, timezone

import streamlit as st

from app_downloads import prepared_download
from app_support import disclaimer, get_settings, show_image
from hematovision_core import charts, class_report, instructor_sign_in, login_guard, quiz, storage
from hematovision_core.quiz_pool import image_path

st.set_page_config(page_title="Instructor · HematoVision", page_icon=":material/school:",
                   layout="wide")
st.title(":material/school: Instructor view")
disclaimer()
settings = get_settings()
LIVE_SECONDS = 10  # how often a live view reads the class's answers again (one query and charts)


def configured_password() -> str | None:
    """`instructor_password` from st.secrets, else HEMATOVISION_INSTRUCTOR_PASSWORD, else None."""
    try:
        secret = st.secrets.get("instructor_password")
    except (FileNotFoundError, st.errors.StreamlitAPIException):  # no (or a broken) secrets file
        secret = None
    return str(secret) if secret else settings.instructor_password


def password_ui(expected: str) -> bool:
    """Ask for the password; True once the right one is typed."""
    # A form: a button (or Enter) sends the password; a bare text input waited for Enter alone.
    with st.form("instructor_login", border=False):
        st.text_input("Instructor password", type="password", key="instructor_password")
        st.form_submit_button("Open the instructor view", key="instructor_login_button",
                              type="primary")
    typed = st.session_state.get("instructor_password", "")
    if not typed:
        st.caption("Students never see this page's results; only the instructor password opens it.")
        return False
    # Wrong tries slow down and then lock (per session and server-wide); see login_guard.
    session_id = st.session_state.setdefault("session_id", uuid.uuid4().hex)
    try:  # the server-wide count is in the database every replica shares
        verdict = instructor_sign_in.instructor_guard(settings.database).attempt(
            session_id, typed, expected, client=st.context.ip_address)
    except storage.StorageError as error:
        st.error(str(error), icon=":material/error:")
        return False
    if not verdict.allowed:
        st.error(login_guard.refusal_message(verdict), icon=":material/lock:")
        if verdict.wait_seconds > 0:
            st.button("Try again", key="retry_password", help="Once the wait is over.")
    return verdict.allowed


def code_ui(summaries: list[storage.QuizCodeSummary], live: bool) -> str:
    """Pick a quiz code (most recent first), with its counts unless the figures below are live
    (the list is drawn once, and its counts would fall behind theirs)."""
    by_code = {s.quiz_code: s for s in summaries}
    codes = list(by_code)

    def label(code: str) -> str:
        summary = by_code[code]
        return code if live else (f"{code} · {summary.students} student(s), {summary.answers} "
                                  f"answers, last {quiz.readable_time(summary.last_answer)}")

    # One select box per mode, the choice carried over: the browser keeps showing the chosen
    # option's first label while the widget stays the same, so a changed label needs a new one.
    key, other = ("instructor_code_live", "instructor_code") if live else \
        ("instructor_code", "instructor_code_live")
    chosen = st.session_state.get(other)
    return st.selectbox("Quiz code", codes, index=codes.index(chosen) if chosen in codes else 0,
                        key=key, format_func=label)


def hardest_images_ui(hardest) -> None:
    """The images the class got wrong most often, as thumbnails."""
    hardest = hardest[hardest["accuracy"] < 1]
    if hardest.empty:
        st.caption("Every image was answered right by everyone.")
        return
    columns = st.columns(4)
    for position, row in enumerate(hardest.itertuples()):
        column = columns[position % 4]
        path = image_path(settings.data_dir, row.image_id)
        if path is not None:
            show_image(column, path, width=150)
        else:
            column.caption(f"(image not on this machine: {row.image_id})")
        mistake = quiz.display_name(row.common_mistake) if row.common_mistake else "-"
        column.caption(f"**{quiz.display_name(row.truth)}**: {row.accuracy:.0%} right of "
                       f"{row.attempts}; often called {mistake}; model: "
                       f"{quiz.display_name(row.model_answer) if row.model_answer else '?'}")


def errors_over_time_ui(code: str) -> None:
    """Which cell types the class keeps missing: error rate per class per day or week."""
    st.subheader("Which cells the class keeps missing, over time")
    period = st.radio("Per", quiz.PERIODS, key="errors_period", horizontal=True,
                      format_func=lambda p: "day" if p == "day" else "week (from Monday)")
    try:
        table = class_report.class_errors_over_time(settings.database, code, period)
    except storage.StorageError as error:
        st.error(str(error))
        return
    st.plotly_chart(charts.class_errors_heatmap(table, period=period), key="errors_over_time",
                    config=charts.CHART_CONFIG)
    st.caption("Each square: wrong answers / answers for that cell type; days in UTC. A row that "
               "stays dark is a cell type the class keeps missing.")


password = configured_password()
if not password:
    st.info("The instructor view is off because no password is configured. Turn it on by setting "
            "the environment variable `HEMATOVISION_INSTRUCTOR_PASSWORD` before `streamlit run`, "
            "or by adding `instructor_password = \"...\"` to `.streamlit/secrets.toml`.")
    st.stop()
if not password_ui(password):
    st.stop()

try:
    summaries = storage.quiz_codes(settings.database)
except storage.StorageError as error:
    st.error(str(error))
    st.stop()
if not summaries:
    st.info("No answers yet. Give students a quiz code: they type it on the Quiz page.")
    st.stop()

code = code_ui(summaries, live=st.session_state.get("instructor_live", False))
live = st.toggle(f"Follow the class live (every {LIVE_SECONDS} s)", key="instructor_live",
                 help="While students answer: the figures below update by themselves.")


# A fragment: a live update, or a click inside (the period of the errors over time), redraws
# only the class's figures.
@st.fragment(run_every=LIVE_SECONDS if live else None)
def class_results_ui(code: str, live: bool) -> None:
    """The figures of one quiz code, computed in the database (no run loads every answer)."""
    try:
        report = class_report.class_report(settings.database, code)
    except storage.StorageError as error:
        st.error(str(error))
        return
    students, versus, classes = report.students, report.versus, report.classes
    if live:
        st.caption(f"Updated {datetime.now(timezone.utc):%H:%M:%S} UTC.")
    columns = st.columns(4)
    columns[0].metric("Students", len(students))
    columns[1].metric("Answers", report.answers)
    columns[2].metric("Class accuracy", f"{report.accuracy:.0%}")
    columns[3].metric("Model accuracy (same images)",
                      f"{versus.model_correct / versus.answered:.0%}" if versus.answered else "-")

    left, right = st.columns(2)
    left.plotly_chart(charts.score_histogram(students["accuracy"]), key="score_histogram",
                      config=charts.CHART_CONFIG)
    right.plotly_chart(charts.human_vs_model_bars(versus, title="Class vs Model"),
                       key="human_vs_model", config=charts.CHART_CONFIG)
    left, right = st.columns(2)
    left.plotly_chart(charts.class_accuracy_bars(report.class_accuracy, who="Class"),
                      key="class_accuracy", config=charts.CHART_CONFIG)
    right.plotly_chart(charts.confusion_matrix_heatmap(
        report.confusion, [quiz.display_name(c) for c in classes],
        title="What the class mistakes for what", answered="answer", truth="true cell"),
        key="class_confusion", config=charts.CHART_CONFIG)

    errors_over_time_ui(code)
    st.subheader("Most confused pairs")
    st.dataframe(report.confused_pairs, hide_index=True, key="confused_pairs")
    st.subheader("Hardest images")
    hardest_images_ui(report.hardest_images)
    st.subheader("Students")
    st.dataframe(students.drop(columns=["session_id"]), hide_index=True, key="students",
                 column_config={"accuracy": st.column_config.NumberColumn(format="percent"),
                                "model_accuracy": st.column_config.NumberColumn(format="percent")})


class_results_ui(code, live)
# Made on request, not in every page run (only then are every row loaded); dropped when the code
# or its number of answers changes (seen by a run of the whole page; a live update redraws only
# the figures above, and the CSV says when it was made).
database = settings.database
answers = next(summary.answers for summary in summaries if summary.quiz_code == code)
prepared_download("Download all answers (CSV)",
                  lambda: quiz.answers_csv(storage.load_answers(database, quiz_code=code)),
                  key="export_csv", subject=(code, answers), file_name=f"quiz-{code}.csv",
                  mime="text/csv", prepare_label="Prepare the CSV of all answers",
                  errors=(storage.StorageError,), icon=":material/table:")
