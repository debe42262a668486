"""Review mode of the Quiz page: a student who keeps a nickname reviews their own mistakes.

UI only: the schedule is `hematovision_core.review`, the cards `review_store`, the nickname and
PIN `students`. Kept apart from the quiz's own state machine (a `QuizSession` in
`st.session_state.quiz`): the review's state is `st.session_state.review`, and the quiz page
calls four things here: the "keep my nickname" fields and the Review button of its settings
form, `open_review` when that button sent the form, and `review_ui` while a review is on.
"""

from __future__ import annotations

import streamlit as st

from app_support import plain, show_image
from hematovision_core import quiz, review, review_store, storage, students
from hematovision_core.morphology import contrast
from hematovision_core.review import DUE

STATE = "review"
PIN_KEY = "review_pin"  # a plain widget key, never copied into the form's saved values
SIGNED_IN = "kept_student"  # the Student this browser session signed in as, once the PIN fitted


def today(now=None):
    """The student's calendar day (the browser's time zone; UTC when it does not say)."""
    return review.local_day(now or review.utc_now(), st.context.timezone)


def keep_nickname_ui(container) -> tuple[bool, str]:
    """The "keep my nickname" box and the optional PIN under it; returns (keep, pin).

    Both sit in the quiz's settings form, which the server sees only when it is sent, so the PIN
    field is always shown rather than appearing when the box is ticked; it is read only then.
    """
    keep = container.checkbox(
        "Keep my nickname for Review mode", key="keep_nickname",
        help="Cells you get wrong come back for review after 1, 3 and 7 days. Anyone who types "
             "a nickname kept without a PIN sees its review cards; add a PIN to keep them yours.")
    pin = container.text_input("PIN for a kept nickname (optional, 4 to 32 characters)",
                               key=PIN_KEY, type="password", max_chars=students.PIN_MAX,
                               help="Stored only as a salted hash. Choose it the first time you "
                                    "keep the nickname; type it every time after.")
    return kept_nickname(keep, pin)


def kept_nickname(keep: bool, pin: str | None) -> tuple[bool, str]:
    """(keep, PIN) as the form sent them; the PIN counts only with the box ticked."""
    if not keep:  # unticked: this browser session no longer opens the nickname's cards
        st.session_state.pop(SIGNED_IN, None)
        return False, ""
    return True, pin or ""


def sign_in(settings, nickname: str, pin: str) -> students.Student:
    """The student behind a kept nickname; ValueError with a message for the page if refused.

    Once the PIN fitted, the same browser session keeps the nickname open (the PIN field is a
    widget Streamlit empties whenever a quiz hides the form): typing another nickname asks again.
    """
    known = st.session_state.get(SIGNED_IN)
    try:
        if known is not None and students.nickname_key(nickname) == students.nickname_key(
                known.nickname):
            return known
        student = students.sign_in(settings.database, nickname, pin, review.utc_now())
    except storage.StorageError as error:
        raise ValueError(f"{error} Your nickname cannot be kept right now.") from None
    st.session_state[SIGNED_IN] = student
    return student


def save_quiz_answer(settings, answer: quiz.Answer) -> None:
    """Store a quiz answer of a student who keeps a nickname (a miss becomes a review card)."""
    now = review.utc_now()
    review_store.save_quiz_answer(settings.database, answer, now, today(now))


def start_review(settings, classifier, pool, nickname: str, keep: bool, pin: str) -> None:
    """Sign in and plan today's session into the page's state (ValueError with a message)."""
    if not keep:
        raise ValueError("Review mode needs a kept nickname: tick \"Keep my nickname\" first.")
    student = sign_in(settings, nickname, pin)
    day = today()
    try:
        plan, history = review_store.plan_today(settings.database, student.id, pool,
                                                classifier.classes, settings.data_dir, day)
    except storage.StorageError as error:
        raise ValueError(str(error)) from None
    st.session_state[STATE] = {
        "student": student, "model_name": classifier.name, "day": day, "plan": plan,
        "review_days": history.review_days, "answers": [], "feedback": None, "save_error": None}


def review_button_ui() -> bool:
    """The "Review my mistakes" button: it sends the quiz's settings form, as Start does."""
    return st.form_submit_button("Review my mistakes", key="start_review",
                                 help="Today's due cells and look-alikes of the ones you confuse.")


def open_review(settings, classifier, values: dict) -> None:
    """Start Review mode from the sent form and rerun into it, or say under the form why not."""
    try:
        start_review(settings, classifier, values["pool"], values["nickname"], *values["keep"])
    except ValueError as error:
        st.error(str(error))
    else:
        st.rerun()


# ---- the review itself --------------------------------------------------------------------------


def answered(label: str, position: int, settings) -> None:
    """Record an answer to item `position` (a stale double click is ignored)."""
    state = st.session_state.get(STATE)
    if not state or state["feedback"] is not None or len(state["answers"]) != position:
        return
    item = state["plan"].items[position]
    now = review.utc_now()
    try:
        card = review_store.record_review(settings.database, state["student"].id, item, label,
                                          now, state["day"])
    except storage.StorageError as error:
        card, state["save_error"] = None, str(error)
    else:  # stored: today counts for the streak
        state["review_days"] = state["review_days"] | {state["day"]}
    state["answers"].append((item, label, card))
    state["feedback"] = (item, label, card)


def update(**changes) -> None:
    """Set fields of the review in progress (the Next button clears the feedback)."""
    if st.session_state.get(STATE):
        st.session_state[STATE].update(changes)


def end_review() -> None:
    """Back to the quiz form (the review's answers are stored already)."""
    st.session_state[STATE] = None


def when(card: review.Card | None, day) -> str:
    """"back in 3 days", "learned" or "" for an answer that made or moved no card."""
    if card is None:
        return ""
    if card.learned:
        return "Learned: it leaves your review cards."
    days = (card.due_on - day).days
    return f"It comes back in {days} day{'s' if days != 1 else ''} (box {card.box} of 3)."


def feedback_ui(state: dict, names: dict) -> None:
    """Right or wrong, when the cell comes back, the contrast line, and the image again."""
    item, given, card = state["feedback"]
    if given == item.truth:
        st.success(f"Right: **{names[item.truth]}**. {when(card, state['day'])}")
    else:
        st.error(f"Not quite: you said **{names[given]}**, it is **{names[item.truth]}**. "
                 f"{when(card, state['day'])}")
        st.markdown(f":material/lightbulb: {contrast(given, item.truth)}")
    last = len(state["answers"]) >= len(state["plan"].items)
    st.button("See today's summary" if last else "Next cell", key="review_next", type="primary",
              on_click=update, kwargs={"feedback": None})
    show_image(st, item.path, width=320)


def item_ui(state: dict, settings, classifier, names: dict) -> None:
    """The next cell: its image and one button per class."""
    position = len(state["answers"])
    item = state["plan"].items[position]
    kind = (f"a cell you missed (box {item.box} of 3)" if item.kind == DUE
            else "a look-alike of cells you confuse")
    st.subheader(f"Cell {position + 1} of {len(state['plan'].items)}")
    st.caption(kind.capitalize())
    picture, buttons = st.columns([1, 1])
    show_image(picture, item.path, width=360)
    buttons.markdown("**Which cell is this?**")
    for label in classifier.classes:
        buttons.button(names[label], key=f"review_answer_{label}", width="stretch",
                       on_click=answered, args=(label, position, settings))


def summary_ui(state: dict) -> None:
    """The end of today's session."""
    answers = state["answers"]
    right = sum(given == item.truth for item, given, _ in answers)
    st.subheader("Done for today")
    st.markdown(f"{right} of {len(answers)} right. Cells you missed come back tomorrow; the "
                "others after a longer wait.")


def review_ui(settings, classifier) -> bool:
    """The whole review mode: header, due count and streak, then cell after cell. False (and the
    review ended) when the sidebar's model is not the one it was planned for."""
    state = st.session_state[STATE]
    if state["model_name"] != classifier.name:  # the sidebar's model changed: its classes differ
        st.info(f"Your review was for the model **{state['model_name']}**; press Review again "
                f"to review with **{classifier.name}**.")
        st.session_state[STATE] = None
        return False
    names = dict(zip(classifier.classes, classifier.display_names))
    plan = state["plan"]
    streak = review.streak(state["review_days"], state["day"])
    st.markdown(f"**{plain(state['student'].nickname)}** · Review mode")
    due_left = plan.due_today - sum(item.kind == DUE for item, _, _ in state["answers"])
    columns = st.columns(3)
    columns[0].metric("Due today", due_left, help="Cells due for review today, left to do.")
    columns[1].metric("Streak", f"{streak} day{'s' if streak != 1 else ''}",
                      help="Days in a row with at least one review.")
    columns[2].metric("Reviewed now", len(state["answers"]))
    if plan.other_model:
        st.caption(f"{plan.other_model} more cell(s) due today belong to another model's classes "
                   "or images not on this server: choose that model in the sidebar.")
    if plan.confusions:
        pairs = ", ".join(f"{names[truth]} / {names[given]}" for truth, given in plan.confusions)
        st.caption(f"Look-alikes today, from the cells you mix up: {pairs}.")
    if state["save_error"]:
        st.warning(f"{state['save_error']} This answer is not kept.")
        state["save_error"] = None
    if not plan.items:
        st.info("Nothing to review today. Cells you get wrong in a quiz, with your nickname "
                "kept, come back here the next day.")
    elif state["feedback"] is not None:
        feedback_ui(state, names)
    elif len(state["answers"]) < len(plan.items):
        item_ui(state, settings, classifier, names)
    else:
        summary_ui(state)
    st.button("Back to the quiz", key="review_done", on_click=end_review)
    return True
