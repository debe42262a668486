"""The quiz session's transitions without streamlit: start, answer, skip, next, finish."""

from __future__ import annotations

from dataclasses import FrozenInstanceError
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from hematovision_core import quiz
from hematovision_core.quiz import QuizSpec
from hematovision_core.quiz_pool import Candidate
from hematovision_core.quiz_session import QuizSession, make_spec

CLASSES = ("eosinophil", "lymphocyte", "neutrophil")
START = datetime(2026, 12, 2, 15, 43, tzinfo=timezone.utc)
OVERLAY = b"\xff\xd8 a JPEG shared by every session"


def make_pool(per_class: int = 10) -> list[Candidate]:
    """Fake candidates (choosing questions never opens the files)."""
    return [Candidate(f"pbc/{label}/{i:03d}.jpg", Path(f"/nowhere/{label}/{i}.jpg"), label)
            for label in CLASSES for i in range(per_class)]


def start(mode="practice", difficulty="mixed", length=5, pool=None, **options) -> QuizSession:
    spec = QuizSpec("LAB-1", "tiny", mode, difficulty, length)
    return QuizSession.start(spec, make_pool() if pool is None else pool, CLASSES,
                             session_id="browser-1", nickname="ana", **options)


def answer_right(session: QuizSession, seconds: float = 4.0, **options) -> QuizSession:
    """Show the current question, then answer it correctly `seconds` later."""
    question = session.current_question
    shown = session.shown(START)
    return shown.answer(question.truth, question.number, START + timedelta(seconds=seconds),
                        model_answer=question.truth, model_confidence=0.9, **options)


def test_start_answer_next_finish():
    session = start("practice", length=3)
    assert len(session.questions) == 3 and not session.answers and not session.finished
    assert session.current_question.number == 1

    first = answer_right(session, seconds=4.5, overlay=OVERLAY)
    assert session.answers == ()  # transitions return new sessions; the old one stays as it was
    assert len(first.answers) == 1 and first.answers[0].correct
    assert first.answers[0].seconds == 4.5
    assert first.answers[0].answered_at == "2026-12-02T15:43:04+00:00"
    assert first.answers[0].session_id == "browser-1" and first.answers[0].nickname == "ana"
    truth = first.answers[0].truth
    assert first.questions[0].model_answer == first.answers[0].model_answer == truth
    assert first.feedback == first.answers[0] and not first.finished
    with pytest.raises(FrozenInstanceError):
        first.hint = True  # type: ignore[misc]

    second = answer_right(first.next())
    assert second.current_question.number == 3
    last = answer_right(second.next())
    assert last.out_of_questions and last.feedback is not None and not last.finished
    done = last.next()
    assert done.finished and done.feedback is None and done.overlay is None
    assert quiz.score(done.answers).points == 30


def test_finish_now_stops_with_the_answers_so_far():
    session = answer_right(start("practice", length=5), overlay=OVERLAY).finish()
    assert session.finished and len(session.answers) == 1
    assert not session.accepts(2)


def test_exam_waits_with_its_feedback_and_practice_shows_it():
    exam = answer_right(start("exam", length=3), overlay=OVERLAY)
    assert exam.feedback is None and exam.overlay is None and not exam.gives_feedback
    assert exam.current_question.number == 2  # straight on to the next question
    exam = answer_right(answer_right(exam))
    assert exam.finished  # after the last answer: the results

    practice = answer_right(start("practice", length=3), overlay=OVERLAY)
    assert practice.gives_feedback and practice.feedback == practice.answers[-1]
    assert practice.overlay is OVERLAY  # the cache's bytes object itself, not a copy
    assert "OVERLAY" not in repr(practice) and "JPEG" not in repr(practice)
    assert not practice.accepts(2)  # the feedback comes first, then Next


def test_hint_costs_points_and_is_reset_for_the_next_question():
    session = start("practice", length=3).take_hint()
    assert session.hint
    answered = answer_right(session)
    assert answered.answers[0].hint_used
    assert answered.answers[0].points == quiz.POINTS_CORRECT - quiz.HINT_COST
    assert not answered.hint


def test_a_stale_double_answer_is_ignored():
    session = start("exam", length=3)
    question = session.current_question
    once = session.answer(question.truth, question.number, START)
    assert once.answer("lymphocyte", question.number, START) is once  # the same click twice
    assert once.answer("lymphocyte", 99, START) is once  # a question never shown
    practice = answer_right(start("practice", length=3))
    number = practice.current_question.number
    assert practice.answer("lymphocyte", number, START) is practice  # feedback still on screen


def test_an_unreadable_image_is_skipped_with_a_message_once():
    session = start("exam", length=4).shown(START)
    unreadable = session.current_question
    skipped = session.skip("cannot identify image file")
    assert [q.number for q in skipped.questions] == [2, 3, 4]
    assert skipped.skip_notice == "This image cannot be read (cannot identify image file); " \
                                  "it was skipped."
    assert skipped.shown_at is None and skipped.skipped == (unreadable.image_id,)
    assert skipped.answers == ()
    shown = skipped.without_messages()
    assert shown.skip_notice is None and shown.without_messages() is shown
    last = skipped
    for _ in range(3):
        last = last.skip("broken")
    assert last.finished and last.answers == ()  # every image unreadable: the (empty) results


def test_the_adaptive_next_question_is_drawn_once_per_answer():
    pool = make_pool()
    reads = []

    def load_pool():
        reads.append(1)
        return pool

    session = start("practice", "adaptive", length=10, pool=pool)
    assert len(session.questions) == 1
    answered = answer_right(session, pool=load_pool)
    assert len(answered.questions) == 2 and len(reads) == 1
    assert answered.questions[1].number == 2
    assert answered.questions[1].image_id != answered.questions[0].image_id
    # Asking again while a question waits draws nothing: the one drawn is kept.
    assert answered.with_next_question(load_pool) is answered and len(reads) == 1
    # The same history draws the same question (the seed is the code and the question number).
    again = answer_right(session, pool=load_pool)
    assert again.questions == answered.questions
    # Next shows the question drawn with the answer; no second draw.
    following = answered.next()
    assert following.questions == answered.questions and len(reads) == 2


def test_an_adaptive_quiz_replaces_a_skipped_image_and_never_draws_it_again():
    pool = make_pool(per_class=2)
    session = start("exam", "adaptive", length=6, pool=pool)
    unreadable = session.current_question.image_id
    session = session.skip("truncated file", lambda: pool)
    assert len(session.questions) == 1 and session.current_question.number == 1
    seen = {session.current_question.image_id}
    while not session.finished:
        session = answer_right(session, pool=lambda: pool)
        seen |= {q.image_id for q in session.questions}
    assert unreadable not in seen
    assert len(session.answers) == 5  # six images, one unreadable


def test_a_fixed_quiz_never_reads_the_pool_again():
    def load_pool():
        raise AssertionError("a mixed quiz keeps the questions it planned")

    session = start("exam", "mixed", length=3)
    session = answer_right(session, pool=load_pool).skip("broken", load_pool)
    assert len(session.questions) == 2


def test_a_kept_nickname_goes_into_every_answer():
    session = start("practice", length=3, student_id=42)
    session = answer_right(answer_right(session).next())
    assert [a.student_id for a in session.answers] == [42, 42]
    assert start("practice").student_id is None


def test_questions_without_the_models_answer_take_the_one_given_with_the_answer():
    session = start("exam", length=3)
    question = session.current_question
    assert question.model_answer is None
    wrong = session.answer("lymphocyte", 1, START, model_answer="neutrophil", model_confidence=0.7)
    assert wrong.answers[0].model_answer == "neutrophil"
    assert wrong.questions[0].model_confidence == 0.7 and wrong.answers[0].model_confidence == 0.7
    planned = quiz.Question(1, question.image_id, question.path, question.truth, "eosinophil",
                            0.99)
    known = QuizSession(session.spec, "b", "ana", "", CLASSES, (planned,))
    judged = known.answer("lymphocyte", 1, START, model_answer="neutrophil", model_confidence=0.5)
    assert judged.answers[0].model_answer == "eosinophil"  # the pool's prediction is kept


def test_start_refuses_an_empty_plan_and_notes_a_short_quiz():
    with pytest.raises(ValueError, match="No images match"):
        start(pool=[])
    short = start("exam", length=40)
    assert short.notice == "Only 30 images match this difficulty, so the quiz is that long."
    assert short.planned_length == 30
    assert start("practice", length=40).notice is None
    assert start("exam", "adaptive", length=40).planned_length == 40
    assert short.without_messages().notice is None


def test_not_saved_is_said_once():
    session = answer_right(start("practice")).not_saved("The database is busy.")
    assert session.save_error == "The database is busy."
    assert session.without_messages().save_error is None


def test_make_spec_reads_the_form():
    spec = make_spec(" lab 1 ", "tiny", "exam", "mixed", 15)
    assert (spec.code, spec.length) == ("LAB1", 15)
    assert make_spec("", "tiny", "practice", "mixed", 15).length == quiz.PRACTICE_LENGTH
    assert len(make_spec("  ", "tiny", "exam", "mixed", 20).code) == 9  # a new code
    with pytest.raises(ValueError):
        make_spec("!", "tiny", "exam", "mixed", 20)


def test_answer_time_runs_from_the_first_drawing():
    session = start("practice").shown(START)
    assert session.shown(START + timedelta(seconds=30)).shown_at == START  # a redraw: same clock
    question = session.current_question
    answered = session.answer(question.truth, 1, START + timedelta(seconds=7.25))
    assert answered.answers[0].seconds == 7.25
    unshown = start("practice")
    assert unshown.answer(question.truth, 1, START).answers[0].seconds == 0.0
