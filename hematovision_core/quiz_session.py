"""One student's quiz in progress: a frozen `QuizSession` and the transitions between its states.

    start -> (shown -> [hint] -> answer | skip) ... -> [next after feedback] ... -> finished

Each transition returns a new session (`dataclasses.replace`); the Quiz page keeps the latest in
`st.session_state.quiz`, draws it and calls these methods from its buttons' callbacks. What needs
the model, the clock or the database stays with the caller, which passes the results in: the
model's answer and Grad-CAM overlay, `now`, the image pool of an adaptive quiz, a storage error.
So a session is small (a lecture hall holds 200 of them): questions and answers, a few strings,
and at most one overlay, the JPEG bytes object that a cache shares between sessions.

Nothing here imports streamlit or reads a clock.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Callable, Sequence

from hematovision_core import quiz
from hematovision_core.quiz import Answer, Question, QuizSpec
from hematovision_core.quiz_pool import Candidate

PoolSource = Callable[[], Sequence[Candidate]]  # the quiz's image pool, read only when needed


def no_pool() -> Sequence[Candidate]:
    """The pool of a quiz that draws no question after it started (every fixed difficulty)."""
    return ()


def make_spec(code_text: str, model_name: str, mode: str, difficulty: str,
              length: int) -> QuizSpec:
    """The spec of the quiz form: a new code when none is typed, practice's long queue;
    ValueError with a message for the student when a field is unusable."""
    code = quiz.normalize_code(code_text) if code_text.strip() else quiz.new_code()
    length = quiz.PRACTICE_LENGTH if mode == "practice" else int(length)
    return QuizSpec(code, model_name, mode, difficulty, length)


@dataclass(frozen=True)
class QuizSession:
    spec: QuizSpec
    session_id: str  # the browser session, stored with every answer
    nickname: str  # normalised (quiz.normalize_nickname)
    source: str  # where the images come from: "" for the model's own held-out split, else a folder
    classes: tuple[str, ...]  # the model's classes, in its order (the adaptive draw needs them)
    questions: tuple[Question, ...]  # asked and planned; an adaptive quiz adds one per answer
    student_id: int | None = None  # a kept nickname (Review mode) that every answer belongs to
    answers: tuple[Answer, ...] = ()
    skipped: tuple[str, ...] = ()  # image ids that could not be read: never drawn again
    shown_at: datetime | None = None  # when the current question was first drawn
    hint: bool = False  # the hint of the current question is shown (it costs points)
    feedback: Answer | None = None  # the answer whose feedback is on screen (not in an exam)
    # Grad-CAM of `feedback` as JPEG bytes: the very object a cache shares between sessions.
    overlay: bytes | None = field(default=None, repr=False)
    stopped: bool = False  # "Finish now" was pressed
    # One-time messages for the page, cleared by `without_messages` once shown.
    notice: str | None = None  # the quiz is shorter than asked for
    save_error: str | None = None  # the last answer could not be stored
    skip_notice: str | None = None  # the last image could not be read

    # ---- start ---------------------------------------------------------------------------------

    @classmethod
    def start(cls, spec: QuizSpec, pool: Sequence[Candidate], classes: Sequence[str], *,
              session_id: str, nickname: str, source: str = "",
              student_id: int | None = None) -> QuizSession:
        """Plan the questions of a new quiz (ValueError if no image fits its difficulty)."""
        questions = quiz.plan_questions(pool, spec, classes)
        if not questions:
            raise ValueError("No images match this difficulty for this model; try another one.")
        notice = None
        if (spec.mode != "practice" and spec.difficulty != "adaptive"
                and len(questions) < spec.length):
            notice = (f"Only {len(questions)} images match this difficulty, so the quiz is "
                      "that long.")
        return cls(spec, session_id, nickname, source, tuple(classes), tuple(questions),
                   student_id=student_id, notice=notice)

    # ---- what the page draws -------------------------------------------------------------------

    @property
    def gives_feedback(self) -> bool:
        """Whether each answer is followed by its feedback (practice and versus; an exam waits)."""
        return self.spec.mode != "exam"

    @property
    def out_of_questions(self) -> bool:
        """Every question asked so far is answered and no other is planned."""
        return len(self.answers) >= len(self.questions)

    @property
    def finished(self) -> bool:
        """Stopped, or out of questions with no feedback left to show: the results are due."""
        return self.stopped or (self.feedback is None and self.out_of_questions)

    @property
    def current_question(self) -> Question:
        """The question to answer next (IndexError when out of questions)."""
        return self.questions[len(self.answers)]

    @property
    def planned_length(self) -> int:
        """Questions the student is told about ("Question 3 of 20")."""
        return self.spec.length if self.spec.difficulty == "adaptive" else len(self.questions)

    def question_of(self, answer: Answer) -> Question:
        """The question an answer was given to."""
        return next(q for q in self.questions if q.image_id == answer.image_id)

    def accepts(self, number: int) -> bool:
        """Whether an answer to question `number` is due now (False: a stale double click)."""
        return (not self.finished and self.feedback is None and not self.out_of_questions
                and self.current_question.number == number)

    # ---- transitions ---------------------------------------------------------------------------

    def shown(self, now: datetime) -> QuizSession:
        """The current question is on screen: its clock starts now (once)."""
        return self if self.shown_at is not None else replace(self, shown_at=now)

    def take_hint(self) -> QuizSession:
        """Show the current question's hint (a right answer then earns less)."""
        return replace(self, hint=True)

    def answer(self, given: str, number: int, now: datetime, *, model_answer: str | None = None,
               model_confidence: float | None = None, overlay: bytes | None = None,
               pool: PoolSource = no_pool) -> QuizSession:
        """Judge `given` as the answer to question `number` (unchanged if that is stale).

        `model_answer` and `model_confidence` fill in a question planned without the model's
        answer; `overlay` is the model's Grad-CAM (JPEG bytes) shown with the feedback.
        """
        if not self.accepts(number):
            return self
        index = len(self.answers)
        question = self.current_question
        if question.model_answer is None:
            question = replace(question, model_answer=model_answer,
                               model_confidence=model_confidence)
        seconds = (now - (self.shown_at or now)).total_seconds()
        answer = quiz.make_answer(self.spec, self.session_id, self.nickname, question, given,
                                  seconds, self.hint, answered_at=now, student_id=self.student_id)
        answered = replace(
            self, questions=self.questions[:index] + (question,) + self.questions[index + 1:],
            answers=self.answers + (answer,), shown_at=None, hint=False,
            feedback=answer if self.gives_feedback else None,
            overlay=overlay if self.gives_feedback else None)
        return answered.with_next_question(pool)

    def skip(self, reason: str, pool: PoolSource = no_pool) -> QuizSession:
        """Drop the current question, whose image cannot be read, and say so once."""
        if self.out_of_questions:
            return self
        index = len(self.answers)
        skipped = replace(
            self, questions=self.questions[:index] + self.questions[index + 1:],
            skipped=self.skipped + (self.current_question.image_id,), shown_at=None, hint=False,
            skip_notice=f"This image cannot be read ({reason}); it was skipped.")
        return skipped.with_next_question(pool)

    def with_next_question(self, pool: PoolSource) -> QuizSession:
        """An adaptive quiz out of questions draws the next one from `pool` (once: a question
        already waiting is kept); a fixed quiz keeps the questions it planned."""
        if self.spec.difficulty != "adaptive" or not self.out_of_questions or self.stopped:
            return self
        unread = set(self.skipped)
        candidates = [c for c in pool() if c.image_id not in unread] if unread else pool()
        following = quiz.next_adaptive_question(candidates, self.spec, self.classes, self.answers)
        return replace(self, questions=self.questions + (following,)) if following else self

    def next(self) -> QuizSession:
        """Leave the feedback: on to the next question, or to the results after the last."""
        return replace(self, feedback=None, overlay=None)

    def finish(self) -> QuizSession:
        """Stop now: the results of the answers so far."""
        return replace(self, feedback=None, overlay=None, stopped=True)

    def not_saved(self, message: str) -> QuizSession:
        """The last answer could not be stored: say so once; the quiz goes on."""
        return replace(self, save_error=message)

    def without_messages(self) -> QuizSession:
        """The session once its one-time messages are shown."""
        if self.notice is None and self.save_error is None and self.skip_notice is None:
            return self
        return replace(self, notice=None, save_error=None, skip_notice=None)
