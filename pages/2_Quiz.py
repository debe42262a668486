"""Morphology quiz: name the cell, then see the truth, the model's answer and where it looked."""

from __future__ import annotations

import uuid
from datetime import datetime, timezone
from functools import partial
from pathlib import Path

import streamlit as st

import app_review
from app_support import (data_missing_message, disclaimer, get_settings, load_classifier,
                         model_sidebar, plain, quiz_feedback, quiz_pool, quiz_sources, show_image)
from hematovision_core import charts, quiz, storage
from hematovision_core.morphology import also_called, card_for, contrast, with_article
from hematovision_core.preprocessing import ImageError
from hematovision_core.quiz_pool import (Candidate, predict_candidates, predict_sample,
                                         predicted_pool)
from hematovision_core.quiz_session import QuizSession, make_spec

st.set_page_config(page_title="Quiz · HematoVision", page_icon=":material/quiz:", layout="wide")
st.title(":material/quiz: Morphology quiz")
disclaimer()

settings = get_settings()
classifier = model_sidebar(settings)
in_progress: QuizSession | None = st.session_state.get("quiz")
if in_progress and in_progress.spec.model_name != classifier.name:
    # A quiz keeps the model it started with (its questions and seed depend on it), so a look
    # at another model, or at another page, does not throw half a quiz away.
    quiz_folder = Path(settings.models_dir) / in_progress.spec.model_name
    if quiz_folder.is_dir():
        classifier = load_classifier(str(quiz_folder))
        st.info(f"This quiz goes on with the model it started with, **{classifier.name}**; "
                "the model chosen in the sidebar is used for your next quiz.")
names = dict(zip(classifier.classes, classifier.display_names))
if "session_id" not in st.session_state:
    st.session_state.session_id = uuid.uuid4().hex  # one per browser session, never shown
FORM_KEYS = ("nickname", "quiz_code", "quiz_source", "mode", "difficulty", "length",
             "keep_nickname")
FORM_COPY = "quiz_form_values"  # a plain key: Streamlit drops widget keys on other pages
for key, value in st.session_state.get(FORM_COPY, {}).items():
    st.session_state.setdefault(key, value)  # back from another page: the form as it was left
st.session_state.setdefault("length", quiz.EXAM_LENGTH)
# Kept while not drawn (Streamlit drops a widget's key in a run that does not draw it).
for key in FORM_KEYS + ("show_progress",):
    if key in st.session_state:
        st.session_state[key] = st.session_state[key]


def article(name: str) -> str:
    """"a" or "an" before a cell name shown in bold (the name itself stays outside)."""
    return with_article(name).split(" ", 1)[0]


OWN_SPLIT = ""  # the quiz source meaning "this model's validation and test images"


def source_label(source: str) -> str:
    if source == OWN_SPLIT:
        return "Images of its own dataset it never trained on (validation and test split)"
    return f"{source}: a folder it never saw (another lab, stain or microscope)"


def load_pool(source: str = OWN_SPLIT) -> list[Candidate]:
    """The images this model never trained on, or stop the page saying why there are none."""
    pool = quiz_pool(classifier, settings.data_dir, source)
    if source != OWN_SPLIT:
        if not pool:
            st.warning(f"`{source}` holds no readable images of this model's classes any more; "
                       "choose other images.")
            st.stop()
        return pool
    if pool:
        return pool
    if classifier.model_folder.manifest is None:
        st.warning(f"The model `{classifier.name}` has no split manifest (split.csv), so the quiz "
                   "cannot tell which images it never trained on. Retrain it with "
                   "`python -m hematovision_core.train`, which writes one.")
    else:
        data_missing_message(settings, classifier.model_folder.dataset or "pbc")
    st.stop()


def source_choices() -> list[str]:
    """The quiz's image sources: this model's own split first, then the folders it never saw."""
    return [OWN_SPLIT] + quiz_sources(classifier, settings.data_dir)


def keep_form_copy() -> None:
    """Copy the form's values under FORM_COPY, where they outlive a visit to another page."""
    st.session_state[FORM_COPY] = {key: st.session_state[key] for key in FORM_KEYS
                                   if key in st.session_state}


def setup_ui() -> dict:
    """The quiz settings; returns their values, the pool and which button sent them.

    The images come first, on their own: the count under them follows the choice. The rest is one
    form that only Start or Review sends, so typing a nickname or a code or picking a mode costs
    the server no page run. In a lecture hall those were three of each student's six runs before
    the first question, all in the same minute (`python -m benchmarks.load --journey quiz`).
    """
    st.markdown("Name the white cell in each image. Your answers are kept under your nickname "
                "for your instructor; other students never see them.")
    sources = source_choices()
    if st.session_state.get("quiz_source") not in sources:
        st.session_state.pop("quiz_source", None)  # e.g. another model: back to its own images
    source = st.selectbox(
        "Images", sources, key="quiz_source", format_func=source_label,
        help="Questions come only from images the model did not train on. A folder from "
             "another lab shows how a change of stain and microscope trips the model up.")
    pool = load_pool(source)  # and for adaptive quizzes: a fixed quiz keeps its questions
    where = ("its validation and test split" if source == OWN_SPLIT
             else f"`{source}`, in the model's classes")
    st.caption(f"{len(pool):,} images the model never trained on ({where}).")
    # Enter in a field does not start the quiz: a student types the nickname, presses Enter,
    # then types the hall's code.
    with st.form("quiz_settings", enter_to_submit=False):
        left, right = st.columns(2)
        values = {
            "nickname": left.text_input("Nickname", key="nickname", max_chars=30,
                                        placeholder="any name, no personal data"),
            "code": left.text_input(
                "Quiz code (optional)", key="quiz_code",
                help="Type the code your instructor gave you to get the same questions as the "
                     "rest of the class; leave empty for a new one."),
            "keep": app_review.keep_nickname_ui(left),  # (keep, PIN): Review mode
            "mode": right.radio("Mode", quiz.MODES, key="mode", format_func=quiz.MODE_LABELS.get,
                                horizontal=True),
            "difficulty": right.selectbox("Difficulty", quiz.DIFFICULTIES, key="difficulty",
                                          format_func=quiz.DIFFICULTY_LABELS.get),
            "length": right.number_input(
                "Questions (exam and versus)", min_value=5, max_value=100, step=5, key="length",
                help="Practice goes on until you press Finish."),
        }
        with st.container(horizontal=True):
            values["start"] = st.form_submit_button("Start the quiz", key="start", type="primary")
            values["review"] = app_review.review_button_ui()
    values.update(source=source, pool=pool)
    keep_form_copy()
    return values


SAMPLE_PER_CLASS = 50  # images of each class the model classifies in a new folder, for difficulty


def start_quiz(values: dict) -> QuizSession:
    """Check the form, choose the questions and return the new quiz (ValueError if unusable)."""
    pool = values["pool"]
    nickname = quiz.normalize_nickname(values["nickname"])
    spec = make_spec(values["code"], classifier.name, values["mode"], values["difficulty"],
                     values["length"])
    keep, pin = values["keep"]  # a kept nickname: its misses become review cards
    student = app_review.sign_in(settings, nickname, pin) if keep else None
    if spec.difficulty in quiz.NEEDS_PREDICTIONS:  # the model's answer on every candidate
        own = values["source"] == OWN_SPLIT
        message = ("The model looks at the quiz images once (kept for next time): {} of {}" if own
                   else "The model looks at a sample of the folder's images: {} of {}")
        bar = st.progress(0.0, text=message.format(0, "..."))

        def progress(done: int, total: int) -> None:
            bar.progress(done / total, text=message.format(done, total))

        if own:  # the explorer's predictions on the whole split, cached on disk
            pool = predicted_pool(classifier, pool, settings.cache_dir, settings.data_dir,
                                  progress=progress)
        else:
            pool = predict_sample(classifier, pool, SAMPLE_PER_CLASS, progress=progress)
        bar.empty()
    return QuizSession.start(spec, pool, classifier.classes,
                             session_id=st.session_state.session_id, nickname=nickname,
                             source=values["source"],
                             student_id=student.id if student else None)  # None: not kept


def sent_settings() -> dict | None:
    """The settings form's values, read from the session state in the run its Start button
    makes, before anything is drawn; None on any other run, or where the form must say why not.

    That run shows the first question, so drawing the form first only to take it away again cost
    20 of the run's 51 messages, which the one server process builds and sends for every student
    of a lecture hall pressing Start at once. The form's widgets have their keys in the state
    (see FORM_KEYS), and the values are the ones `setup_ui` would return.
    """
    state = st.session_state
    if not state.get("start") or state.get("start_review"):
        return None
    source = state.get("quiz_source", OWN_SPLIT)
    if source not in source_choices():
        return None
    pool = quiz_pool(classifier, settings.data_dir, source)
    if not pool:
        return None  # the form says why there are no images
    keep_form_copy()
    return {"nickname": state.get("nickname", ""), "code": state.get("quiz_code", ""),
            "keep": app_review.kept_nickname(bool(state.get("keep_nickname", False)),
                                             state.get(app_review.PIN_KEY)),
            "mode": state.get("mode", quiz.MODES[0]),
            "difficulty": state.get("difficulty", quiz.DIFFICULTIES[0]),
            "length": state.get("length", quiz.EXAM_LENGTH), "start": True, "review": False,
            "source": source, "pool": pool}


def start_clicked(values: dict) -> QuizSession | None:
    """Start the quiz the form asks for, or say under the form why not (None)."""
    try:
        session = start_quiz(values)
    except ValueError as error:
        st.error(str(error))
        return None
    st.session_state.quiz = session
    return session


def model_answer_and_overlay(session: QuizSession) -> tuple[Candidate, bytes | None]:
    """The model's answer on the current question and, where feedback follows, its Grad-CAM
    overlay (JPEG bytes, shared by every session through a cache). ImageError if unreadable."""
    question = session.current_question
    candidate = Candidate(question.image_id, question.path, question.truth)
    if session.gives_feedback:
        return quiz_feedback(classifier, candidate)
    if question.model_answer is None:  # an exam: the model's answer, kept for the results
        return predict_candidates(classifier, [candidate])[0], None
    return candidate, None


def saved(session: QuizSession) -> QuizSession:
    """Store the session's last answer; a storage error is said once and the quiz goes on."""
    answer = session.answers[-1]
    try:
        if answer.student_id is None:
            storage.save_answer(settings.database, answer)
        else:  # a kept nickname: a wrong answer also becomes a review card
            app_review.save_quiz_answer(settings, answer)
    except storage.StorageError as error:
        return session.not_saved(str(error))
    return session


# On a phone (Streamlit stacks columns under 640 px) the image, then 8 full-width buttons one
# under the other, ran to 1,200 px: the answers go two to a row and the image is kept to a third
# of the screen, with a smaller title and top margin, so the image and every answer fit the first
# screen (844 px). `st-key-<key>` is the class Streamlit gives a keyed container.
PHONE_CSS = """<style>
@media (max-width: 640px) {
  [data-testid="stMainBlockContainer"] { padding-top: 3.5rem !important; }
  [data-testid="stMainBlockContainer"] h1 { font-size: 1.9rem !important; }
  .st-key-quiz_answers { flex-direction: row; flex-wrap: wrap; gap: 0.5rem !important; }
  .st-key-quiz_answers > div { flex: 1 1 calc(50% - 0.25rem); min-width: calc(50% - 0.25rem); }
  .st-key-quiz_image img { max-height: 26vh; width: auto !important; }
}
</style>"""


def score_line_ui(session: QuizSession, with_time: bool = False) -> None:
    """The score in one line, above a question and under the feedback. Four metrics filled a
    phone's first screen, and under the feedback they were 9 of an answer's 25 messages, which the
    one server process makes and sends for every student of a lecture hall."""
    result = quiz.score(session.answers)
    if not result.answered:
        return
    versus = (f" · you {result.correct} : {result.model_correct} model"
              if session.spec.mode == "versus" else "")
    timing = (f" (best {result.best_streak}) · {result.mean_seconds:.1f} s a question"
              if with_time else "")
    st.caption(f"Score **{result.points} / {result.max_points}** · right {result.correct} / "
               f"{result.answered} · streak {result.streak}{timing}{versus}")


def scoreboard_ui(session: QuizSession) -> None:
    """Score, streak and time with the results; in versus mode, the Human vs Model tally."""
    result = quiz.score(session.answers)
    columns = st.columns(5 if session.spec.mode == "versus" else 4)
    columns[0].metric("Score", f"{result.points} / {result.max_points}")
    columns[1].metric("Right", f"{result.correct} / {result.answered}")
    columns[2].metric("Streak", result.streak, help=f"Best streak: {result.best_streak}")
    columns[3].metric("Time per question", f"{result.mean_seconds:.1f} s")
    if session.spec.mode == "versus":
        columns[4].metric("You vs Model", f"{result.correct} : {result.model_correct}")


def question_ui(session: QuizSession) -> None:
    """The image, one button per class, the hint."""
    question = session.current_question
    total = "" if session.spec.mode == "practice" else f" of {session.planned_length}"
    st.subheader(f"Question {question.number}{total}")
    if session.skip_notice:
        st.error(session.skip_notice)
    picture, buttons = st.columns([1, 1])
    show_image(picture.container(key="quiz_image"), question.path, width=360)
    buttons.markdown("**Which cell is this?**")
    answers = buttons.container(key="quiz_answers", gap="small")
    for label in classifier.classes:
        answers.button(names[label], key=f"answer_{label}", width="stretch",
                       on_click=answer_clicked, args=(label, question.number))
    card = card_for(question.truth)
    if card:
        if session.hint:
            buttons.info("Hint: " + "; ".join(card.key_features))
        else:
            buttons.button(f"Hint (costs {quiz.HINT_COST} points)", key="hint", type="tertiary",
                           on_click=update_quiz, args=(QuizSession.take_hint,))


# Buttons act through callbacks, which run before the page is drawn: one script run shows the
# result of a click, where `if st.button(...): ...; st.rerun()` cost two (half a lecture hall's
# server time went to those second runs).

def answer_clicked(label: str, number: int) -> None:
    """Judge and store an answer to question `number` (a stale double click is ignored)."""
    session: QuizSession | None = st.session_state.get("quiz")
    if not session or not session.accepts(number):
        return
    pool = partial(load_pool, session.source)  # read only by an adaptive quiz
    try:
        judged, overlay = model_answer_and_overlay(session)
    except ImageError as error:
        st.session_state.quiz = session.skip(str(error), pool)
        return
    session = session.answer(label, number, datetime.now(timezone.utc),
                             model_answer=judged.predicted, model_confidence=judged.confidence,
                             overlay=overlay, pool=pool)
    st.session_state.quiz = saved(session)


def update_quiz(transition) -> None:
    """Apply a transition without arguments (take_hint, next, finish) to the quiz in progress."""
    if st.session_state.get("quiz"):
        st.session_state.quiz = transition(st.session_state.quiz)


def new_quiz() -> None:
    st.session_state.quiz = None


def feedback_ui(session: QuizSession) -> None:
    """Right or wrong, the truth, the model's answer and Grad-CAM, and the contrast line."""
    answer = session.feedback
    if answer.correct:
        st.success(f"Right: this is {article(names[answer.truth])} **{names[answer.truth]}**.")
    else:
        st.error(f"Not quite: you said **{names[answer.answer]}**, it is "
                 f"{article(names[answer.truth])} **{names[answer.truth]}**.")
        st.markdown(f":material/lightbulb: {contrast(answer.answer, answer.truth)}")
    other_name = also_called(answer.truth, names[answer.truth])  # e.g. "a nucleated red cell"
    if other_name:
        st.caption(other_name)
    model_verdict = "right" if answer.model_correct else "wrong"
    st.markdown(f"The model says **{names[answer.model_answer]}** "
                f"({answer.model_confidence:.0%} confident): {model_verdict}.")
    # Under the verdict, not under the pictures: on a phone those fill a screen and more.
    st.button("See the results" if session.out_of_questions else "Next question", key="next",
              type="primary", on_click=update_quiz, args=(QuizSession.next,))
    left, right = st.columns(2)
    show_image(left, session.question_of(answer).path, caption="The image", width=320)
    right.image(session.overlay, caption="Where the model looked (Grad-CAM)",
                width=320, output_format="JPEG")  # JPEG bytes already: shown as they are


def progress_ui(session: QuizSession) -> None:
    """Accuracy per cell type and the student's own confusion matrix."""
    answers = session.answers
    if not answers:
        return
    left, right = st.columns(2)
    left.plotly_chart(charts.class_accuracy_bars(quiz.class_accuracy(answers, classifier.classes,
                                                                     names)),
                      key="class_accuracy", config=charts.CHART_CONFIG)
    right.plotly_chart(charts.confusion_matrix_heatmap(
        quiz.confusion_matrix(answers, classifier.classes), classifier.display_names,
        title="Which cells you mistake for which", answered="your answer", truth="true cell"),
        key="confusion", config=charts.CHART_CONFIG)


def review_ui(session: QuizSession) -> None:
    """Every wrong answer with its image, the truth and the contrast line."""
    wrong = [a for a in session.answers if not a.correct]
    st.subheader(f"Review: {len(wrong)} wrong answer(s)")
    if not wrong:
        st.success("No mistakes. Well done!")
    for answer in wrong:
        question = session.question_of(answer)
        with st.container(border=True):
            left, right = st.columns([1, 3])
            show_image(left, question.path, width=160)
            right.markdown(f"**Question {answer.question_number}**: you said "
                           f"**{names[answer.answer]}**, it is {article(names[answer.truth])} "
                           f"**{names[answer.truth]}** "
                           f"(the model said {names.get(answer.model_answer, '?')}).")
            right.caption(contrast(answer.answer, answer.truth))


if st.session_state.get(app_review.STATE) and app_review.review_ui(settings, classifier):
    st.stop()  # Review mode: its own section, then nothing else

session: QuizSession | None = st.session_state.get("quiz")
if session and session.spec.model_name != classifier.name:  # its model folder is gone
    st.info(f"The model `{session.spec.model_name}` of your quiz is no longer here, so the quiz "
            "started over.")
    session = st.session_state.quiz = None

if session is None:
    # Start shows the first question in the run it makes (`st.rerun()` cost two), and that run
    # does not draw the settings unless they must say why the quiz cannot start.
    sent, refusal = sent_settings(), None
    if sent is not None:
        try:
            session = st.session_state.quiz = start_quiz(sent)
        except ValueError as error:  # said under the form, which is drawn below
            refusal = str(error)
    if session is None:
        settings_area = st.empty()
        with settings_area.container():
            values = setup_ui()
            if values["review"]:
                app_review.open_review(settings, classifier, values)  # reruns into Review mode
            if refusal is not None:
                st.error(refusal)
            elif values["start"]:
                session = start_clicked(values)
        if session is None:
            st.stop()
        settings_area.empty()

spec = session.spec
images = "" if session.source == OWN_SPLIT else f" · images from `{session.source}`"
st.markdown(f"**{plain(session.nickname)}** · {quiz.MODE_LABELS[spec.mode]} · "
            f"{quiz.DIFFICULTY_LABELS[spec.difficulty]}{images} · quiz code **`{spec.code}`**",
            help="Share the code: the same code and images give the same questions.")
st.html(PHONE_CSS)


# A fragment: an answer, "Next", a hint or "Finish" reruns only this function, and the browser
# redraws only its part of the page. The title, the sidebar and the line above stay as they are,
# and the server is spared a whole page per click (in a lecture hall, a third of its time).
@st.fragment
def quiz_ui() -> None:
    """The quiz in progress: the question, the feedback after an answer, or the results."""
    session: QuizSession | None = st.session_state.get("quiz")
    if session is None:  # "New quiz": its settings form lies outside this fragment
        st.rerun(scope="app")
    if not session.finished and session.feedback is None:  # a question: its time runs from now
        session = session.shown(datetime.now(timezone.utc))
    st.session_state.quiz = session.without_messages()  # each message is shown once
    spec = session.spec
    if session.notice:
        st.info(session.notice)
    if session.save_error:
        st.warning(f"{session.save_error} Your quiz goes on, but this answer is not kept.")

    if session.finished:
        scoreboard_ui(session)
        st.subheader("Results")
        progress_ui(session)
        if spec.mode == "versus":
            st.plotly_chart(charts.human_vs_model_bars(quiz.human_vs_model(session.answers)),
                            key="versus", config=charts.CHART_CONFIG)
        review_ui(session)
    elif session.feedback is not None:
        feedback_ui(session)  # the verdict first: on a phone it is what the first screen shows
        score_line_ui(session, with_time=True)
        # The two progress charts cost more server time than the rest of the page (a lecture
        # hall's bottleneck): drawn on request during the quiz, always with the results.
        if st.toggle("Show my progress charts", key="show_progress"):
            progress_ui(session)
    else:
        if spec.mode != "exam":
            score_line_ui(session)
        question_ui(session)
        if spec.mode == "exam":
            answered, planned = len(session.answers), session.planned_length
            st.progress(answered / planned,
                        text=f"{answered} of {planned} answered; feedback at the end")
        # No progress charts beside a question: they belong to the feedback and the results.

    if not session.finished and session.answers:
        st.button("Finish now", key="finish", on_click=update_quiz, args=(QuizSession.finish,))
    st.button("New quiz", key="new_quiz", on_click=new_quiz)


quiz_ui()
