"""Review mode without streamlit: the Leitner schedule on a fake clock, the streak, the session's
mix of due cards and look-alikes, kept nicknames and hashed PINs, and cards in the database
(SQLite, and PostgreSQL when HEMATOVISION_TEST_POSTGRES_URL is set)."""

from __future__ import annotations

from datetime import date, datetime, timedelta, timezone
from pathlib import Path

import pytest
import sqlalchemy as sa

from hematovision_core import class_report, database, quiz, review, review_store, storage, students
from hematovision_core.quiz import QuizSpec
from hematovision_core.quiz_pool import Candidate
from hematovision_core.review import Card, ReviewItem

CLASSES = ["eosinophil", "lymphocyte", "neutrophil"]
START = datetime(2026, 12, 1, 9, 30, tzinfo=timezone.utc)  # a Tuesday


class FakeClock:
    """A clock the test moves by hand: `now` for stored times, `today` for the schedule."""

    def __init__(self, start: datetime = START):
        self.now = start

    def advance(self, days: float) -> None:
        self.now += timedelta(days=days)

    @property
    def today(self) -> date:
        return review.local_day(self.now)


# ---- the schedule -------------------------------------------------------------------------------


def test_a_miss_is_due_the_next_day_and_right_answers_climb_1_3_7_days_then_learned():
    clock = FakeClock()
    card = review.missed("pbc/eosinophil/1.jpg", "eosinophil", "neutrophil", clock.now, clock.today)
    assert (card.box, card.due_on) == (1, date(2026, 12, 2))
    assert not card.is_due(clock.today)
    clock.advance(1)
    assert card.is_due(clock.today)

    waits = []
    for expected_box in (2, 3, review.LEARNED):
        assert card.is_due(clock.today)
        before = clock.today
        card = review.after_review(card, "eosinophil", clock.now, clock.today)
        assert card.box == expected_box and card.last_answer == "eosinophil"
        if card.learned:
            break
        waits.append((card.due_on - before).days)
        clock.advance(waits[-1] - 1)
        assert not card.is_due(clock.today), "not due the day before"
        clock.advance(1)
    assert waits == [3, 7]
    assert card.due_on is None and not card.is_due(clock.today + timedelta(days=400))


@pytest.mark.parametrize("box", [1, 2, 3, review.LEARNED])
def test_a_wrong_review_puts_the_card_back_in_box_1_due_tomorrow(box):
    clock = FakeClock()
    card = Card("pbc/lymphocyte/2.jpg", "lymphocyte", box, clock.today, review.iso(clock.now), "x")
    after = review.after_review(card, "neutrophil", clock.now, clock.today)
    assert (after.box, after.due_on) == (1, clock.today + timedelta(days=1))
    assert after.last_answer == "neutrophil" and after.last_seen == "2026-12-01T09:30:00+00:00"


def test_days_are_the_students_own_calendar_days():
    late_evening_utc = datetime(2026, 12, 1, 23, 30, tzinfo=timezone.utc)
    assert review.local_day(late_evening_utc) == date(2026, 12, 1)
    assert review.local_day(late_evening_utc, "Europe/Berlin") == date(2026, 12, 2)
    assert review.local_day(late_evening_utc, "America/New_York") == date(2026, 12, 1)
    for hostile in ("Not/AZone", "../../etc/passwd", "", None):  # the browser sends the name
        assert review.local_day(late_evening_utc, hostile) == date(2026, 12, 1)


def test_streak_counts_consecutive_review_days_and_survives_until_today_is_over():
    today = date(2026, 12, 10)
    days = {today - timedelta(days=n) for n in (1, 2, 3, 5)}
    assert review.streak(days, today) == 3  # not yet reviewed today: the streak still stands
    assert review.streak(days | {today}, today) == 4
    assert review.streak(days, today + timedelta(days=1)) == 0  # a whole day missed
    assert review.streak(set(), today) == 0


# ---- today's session ----------------------------------------------------------------------------


def make_pool(data_dir: Path, per_class: int = 6) -> list[Candidate]:
    pool = []
    for label in CLASSES:
        for i in range(per_class):
            relative = f"pbc/{label}/{i}.jpg"
            (data_dir / relative).parent.mkdir(parents=True, exist_ok=True)
            (data_dir / relative).write_bytes(b"not read here")
            pool.append(Candidate(relative, data_dir / relative, label))
    return pool


def card(image_id: str, box: int, due_on: date) -> Card:
    return Card(image_id, image_id.split("/")[1], box, due_on, "2026-11-01T00:00:00+00:00", "x")


def test_a_session_serves_due_cards_lowest_box_first_mixed_with_look_alikes(tmp_path):
    pool = make_pool(tmp_path)
    today = date(2026, 12, 5)
    cards = [card("pbc/eosinophil/0.jpg", 2, today), card("pbc/eosinophil/1.jpg", 1, today),
             card("pbc/lymphocyte/0.jpg", 1, today - timedelta(days=3)),  # overdue
             card("pbc/lymphocyte/1.jpg", 1, today + timedelta(days=1)),  # not yet
             card("pbc/neutrophil/0.jpg", review.LEARNED, None),
             card("pbc/basophil/9.jpg", 1, today)]  # another model's class
    mistakes = {("eosinophil", "neutrophil"): 3, ("lymphocyte", "lymphocyte"): 9,
                ("lymphocyte", "eosinophil"): 1}
    plan = review.plan_review(cards, pool, mistakes, CLASSES, tmp_path, today, student_id=7)
    due = [item for item in plan.items if item.kind == review.DUE]
    extras = [item for item in plan.items if item.kind == review.LOOK_ALIKE]
    assert [item.image_id for item in due] == ["pbc/lymphocyte/0.jpg", "pbc/eosinophil/1.jpg",
                                               "pbc/eosinophil/0.jpg"]
    assert (plan.due_today, plan.other_model) == (3, 1)
    assert plan.confusions == [("eosinophil", "neutrophil"), ("lymphocyte", "eosinophil")]
    # Look-alikes: the class said first, then the true one; never one of their own cards.
    assert len(extras) == review.MIN_LOOK_ALIKES
    assert [item.truth for item in extras] == ["neutrophil", "eosinophil"]
    assert not {item.image_id for item in extras} & {c.image_id for c in cards}
    assert plan.items[0].kind == review.DUE and plan.items[-1].kind == review.DUE  # mixed in
    again = review.plan_review(cards, pool, mistakes, CLASSES, tmp_path, today, student_id=7)
    assert again == plan  # the same all day: a rerun or a second tab sees the same session
    tomorrow = review.plan_review(cards, pool, mistakes, CLASSES, tmp_path,
                                  today + timedelta(days=1), student_id=7)
    assert {i.image_id for i in tomorrow.items if i.kind == review.LOOK_ALIKE} != \
        {i.image_id for i in extras}


def test_nothing_due_and_no_mistakes_gives_an_empty_session(tmp_path):
    plan = review.plan_review([], make_pool(tmp_path), {}, CLASSES, tmp_path, date(2026, 12, 5), 1)
    assert plan.items == [] and plan.due_today == 0 and plan.confusions == []


def test_a_missing_image_file_is_not_served(tmp_path):
    today = date(2026, 12, 5)
    gone = card("pbc/eosinophil/404.jpg", 1, today)
    outside = card("../secrets/eosinophil.jpg", 1, today)  # ids come from the database
    plan = review.plan_review([gone, outside], make_pool(tmp_path), {}, CLASSES, tmp_path, today, 1)
    assert plan.items == [] and plan.other_model == 2


# ---- PINs and kept nicknames --------------------------------------------------------------------


def test_a_pin_is_stored_salted_and_hashed_and_only_the_right_one_matches():
    first, second = students.hash_pin("4711"), students.hash_pin("4711")
    assert first != second  # a fresh salt each time: equal PINs look different
    assert "4711" not in first and first.startswith("scrypt$")
    assert students.pin_matches("4711", first) and students.pin_matches("4711", second)
    assert not students.pin_matches("4712", first)
    assert not students.pin_matches("4711", "garbage") and not students.pin_matches("4711", "")


@pytest.mark.parametrize("typed, message", [("12", "4 to 32"), ("x" * 33, "4 to 32"),
                                            ("12\n34", "control"), ("12\u202e34", "control")])
def test_an_unusable_pin_gets_a_clear_message(typed, message):
    with pytest.raises(students.SignInError, match=message):
        students.normalize_pin(typed)
    assert students.normalize_pin("") is None and students.normalize_pin(None) is None


def test_keeping_a_nickname_with_a_pin_refuses_a_wrong_pin_and_stores_no_pin(database_url):
    clock = FakeClock()
    ana = students.sign_in(database_url, "  Ana  ", "4711", clock.now)
    assert ana.created and ana.has_pin and ana.nickname == "Ana"
    again = students.sign_in(database_url, "ana", "4711", clock.now)  # case and spaces aside
    assert again.id == ana.id and not again.created
    with pytest.raises(students.SignInError, match="Wrong PIN"):
        students.sign_in(database_url, "ANA", "1234", clock.now)
    with pytest.raises(students.SignInError, match="kept with a PIN"):
        students.sign_in(database_url, "ana", "", clock.now)
    ben = students.sign_in(database_url, "ben", None, clock.now)
    assert not ben.has_pin and students.sign_in(database_url, "Ben", None, clock.now).id == ben.id
    with pytest.raises(students.SignInError, match="kept without a PIN"):
        students.sign_in(database_url, "ben", "9999", clock.now)  # no one can lock ben out
    for hostile in ("", "   ", "x" * 31):
        with pytest.raises(students.SignInError):
            students.sign_in(database_url, hostile, None, clock.now)

    engine = database.engine_for(database_url)
    with engine.connect() as connection:
        rows = connection.execute(sa.text("SELECT * FROM students")).all()
    stored = " ".join(str(value) for row in rows for value in row)
    assert "4711" not in stored and "1234" not in stored
    assert len(rows) == 2


def test_wrong_pins_lock_the_nickname_for_longer_and_longer(database_url):
    clock = FakeClock()
    policy = students.PinPolicy(free_failures=2, first_lock=30, max_lock=120)
    students.sign_in(database_url, "cleo", "right-pin", clock.now, policy)
    for _ in range(2):  # typos
        with pytest.raises(students.SignInError, match=r"^Wrong PIN for this nickname\.$"):
            students.sign_in(database_url, "cleo", "wrong", clock.now, policy)
    with pytest.raises(students.SignInError, match="Wait 30 s"):
        students.sign_in(database_url, "cleo", "wrong", clock.now, policy)
    with pytest.raises(students.SignInError, match="Too many wrong PINs.*wait 30 s"):
        students.sign_in(database_url, "cleo", "right-pin", clock.now, policy)  # even the right one
    clock.advance(31 / 86400)
    with pytest.raises(students.SignInError, match="Wait 1 min"):
        students.sign_in(database_url, "cleo", "wrong", clock.now, policy)
    clock.advance(61 / 86400)
    with pytest.raises(students.SignInError, match="Wait 2 min"):
        students.sign_in(database_url, "cleo", "wrong", clock.now, policy)
    clock.advance(121 / 86400)
    with pytest.raises(students.SignInError, match="Wait 2 min"):  # capped
        students.sign_in(database_url, "cleo", "wrong", clock.now, policy)
    clock.advance(121 / 86400)
    assert students.sign_in(database_url, "cleo", "right-pin", clock.now, policy).has_pin
    with pytest.raises(students.SignInError, match=r"^Wrong PIN for this nickname\.$"):
        students.sign_in(database_url, "cleo", "wrong", clock.now, policy)  # the count restarted


# ---- cards in the database ----------------------------------------------------------------------


def quiz_answer(student_id, truth, given, number, now, code="LAB-1") -> quiz.Answer:
    spec = QuizSpec(code, "tiny-3class", "practice", "mixed", 200)
    question = quiz.Question(number, f"pbc/{truth}/{number}.jpg", Path("/x.jpg"), truth,
                             truth, 0.9)
    return quiz.make_answer(spec, "session-1", "ana", question, given, 2.0, answered_at=now,
                            student_id=student_id)


def test_cards_move_through_the_boxes_in_the_database(database_url):
    clock = FakeClock()
    ana = students.sign_in(database_url, "ana", "4711", clock.now)
    review_store.save_quiz_answer(database_url, quiz_answer(ana.id, "eosinophil", "neutrophil", 1,
                                                            clock.now), clock.now, clock.today)
    review_store.save_quiz_answer(database_url, quiz_answer(ana.id, "lymphocyte", "lymphocyte", 2,
                                                            clock.now), clock.now, clock.today)
    review_store.save_quiz_answer(database_url, quiz_answer(None, "neutrophil", "eosinophil", 3,
                                                            clock.now), clock.now, clock.today)
    stored = storage.load_answers(database_url)
    assert [a.student_id for a in stored] == [ana.id, ana.id, None]  # the link, kept or not
    history = review_store.history(database_url, ana.id, clock.today)
    assert [(c.image_id, c.box, c.due_on) for c in history.cards] == [
        ("pbc/eosinophil/1.jpg", 1, date(2026, 12, 2))]  # only the student's own wrong answer
    assert history.mistakes == {("eosinophil", "neutrophil"): 1}
    assert history.streak(clock.today) == 0

    item = ReviewItem("pbc/eosinophil/1.jpg", Path("/x.jpg"), "eosinophil", review.DUE, 1)
    clock.advance(1)
    moved = review_store.record_review(database_url, ana.id, item, "eosinophil", clock.now,
                                       clock.today)
    assert (moved.box, moved.due_on) == (2, date(2026, 12, 5))
    # The same card again today (a second tab): no longer due, a right answer does not move it.
    assert review_store.record_review(database_url, ana.id, item, "eosinophil", clock.now,
                                      clock.today) is None
    clock.advance(3)
    wrong = review_store.record_review(database_url, ana.id, item, "lymphocyte", clock.now,
                                       clock.today)
    assert (wrong.box, wrong.due_on) == (1, clock.today + timedelta(days=1))
    look_alike = ReviewItem("pbc/neutrophil/8.jpg", Path("/x.jpg"), "neutrophil",
                            review.LOOK_ALIKE, None)
    assert review_store.record_review(database_url, ana.id, look_alike, "neutrophil", clock.now,
                                      clock.today) is None  # right: no card
    history = review_store.history(database_url, ana.id, clock.today)
    assert [(c.image_id, c.box) for c in history.cards] == [("pbc/eosinophil/1.jpg", 1)]
    assert history.review_days == {date(2026, 12, 2), date(2026, 12, 5)}
    assert history.reviewed_today == {"pbc/eosinophil/1.jpg", "pbc/neutrophil/8.jpg"}
    assert history.streak(clock.today) == 1
    assert history.mistakes == {("eosinophil", "neutrophil"): 1, ("eosinophil", "lymphocyte"): 1}
    other = students.sign_in(database_url, "ben", None, clock.now)
    assert review_store.history(database_url, other.id, clock.today).cards == []


# ---- the instructor's view over time ------------------------------------------------------------


def test_class_errors_over_time_in_sql_equal_the_python_ones(database_url):
    clock, answers = FakeClock(datetime(2026, 11, 23, 10, tzinfo=timezone.utc)), []  # a Monday
    for day in range(10):
        for number, truth in enumerate(CLASSES * 2):
            given = truth if (day + number) % 3 else "neutrophil"
            answers.append(quiz_answer(None, truth, given, number, clock.now, code="HALL-1"))
        clock.advance(1)
    answers.append(quiz_answer(None, "eosinophil", "lymphocyte", 1, clock.now, code="OTHER"))
    storage.save_answers(database_url, answers)
    hall = [a for a in answers if a.quiz_code == "HALL-1"]
    for period in quiz.PERIODS:
        from_sql = class_report.class_errors_over_time(database_url, "HALL-1", period)
        expected = quiz.class_errors_over_time(hall, period)
        assert from_sql.equals(expected), (from_sql, expected)
    weeks = class_report.class_errors_over_time(database_url, "HALL-1", "week")
    assert weeks["period"].unique().tolist() == ["2026-11-23", "2026-11-30"]
    assert weeks["answered"].sum() == len(hall)
    first = weeks.iloc[0]
    assert (first["class"], first["answered"]) == ("eosinophil", 14)
    with pytest.raises(ValueError, match="period"):
        class_report.class_errors_over_time(database_url, "HALL-1", "month")
