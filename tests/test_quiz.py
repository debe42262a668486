"""Quiz logic without streamlit: codes, question order, difficulties, adaptive choice, statistics."""

from __future__ import annotations

from collections import Counter
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from hematovision_core import quiz
from hematovision_core.quiz import Answer, QuizSpec
from hematovision_core.model_io import ModelFolder
from hematovision_core.quiz_pool import Candidate, manifest_pool, predicted_pool

CLASSES = ["eosinophil", "lymphocyte", "neutrophil"]


def make_pool(per_class: int = 30, classes=CLASSES) -> list[Candidate]:
    """A pool of fake candidates (the files need not exist for choosing questions)."""
    return [Candidate(f"pbc/{label}/{label[:2]}_{i:03d}.jpg", Path(f"/nowhere/{label}/{i}.jpg"), label)
            for label in classes for i in range(per_class)]


def spec(code="LECTURE-1", mode="exam", difficulty="mixed", length=quiz.EXAM_LENGTH) -> QuizSpec:
    return QuizSpec(code, "tiny-3class", mode, difficulty, length)


def answer_to(question, given: str, spec_: QuizSpec, session="s1", nickname="ana", seconds=3.0,
              hint=False) -> Answer:
    return quiz.make_answer(spec_, session, nickname, question, given, seconds, hint)


def test_same_code_gives_same_questions_in_same_order():
    pool = make_pool()
    first = quiz.plan_questions(pool, spec(), CLASSES)
    again = quiz.plan_questions(list(reversed(pool)), spec(), CLASSES)  # pool order is irrelevant
    other = quiz.plan_questions(pool, spec(code="LECTURE-2"), CLASSES)
    assert [q.image_id for q in first] == [q.image_id for q in again]
    assert [q.image_id for q in first] != [q.image_id for q in other]
    # The mode and difficulty are part of the seed too.
    practice = quiz.plan_questions(pool, spec(mode="practice"), CLASSES)
    assert [q.image_id for q in practice] != [q.image_id for q in first]


def test_a_halls_plan_is_made_once_per_pool_and_spec(monkeypatch):
    pool, dealt = make_pool(), []
    deal = quiz.balanced_order
    monkeypatch.setattr(quiz, "balanced_order", lambda *a, **k: dealt.append(1) or deal(*a, **k))
    first = quiz.plan_questions(pool, spec(code="HALL-1"), CLASSES)
    first.clear()  # a caller's list is its own
    again = quiz.plan_questions(pool, spec(code="HALL-1"), CLASSES)
    assert len(dealt) == 1 and len(again) == quiz.EXAM_LENGTH
    copy = list(pool)  # an equal pool, another object: planned again, to the same questions
    assert quiz.plan_questions(copy, spec(code="HALL-1"), CLASSES) == again and len(dealt) == 2
    quiz.plan_questions(pool, spec(code="HALL-2"), CLASSES)
    assert len(dealt) == 3
    for number in range(quiz.PLANS_KEPT):  # the oldest plans make room
        quiz.plan_questions(pool, spec(code=f"HALL-{number + 10}"), CLASSES)
    quiz.plan_questions(pool, spec(code="HALL-1"), CLASSES)
    assert len(dealt) == 4 + quiz.PLANS_KEPT and len(quiz._plans) == quiz.PLANS_KEPT


def test_exam_length_and_class_balance():
    questions = quiz.plan_questions(make_pool(), spec(), CLASSES)
    assert len(questions) == quiz.EXAM_LENGTH == 20
    assert [q.number for q in questions] == list(range(1, 21))
    counts = Counter(q.truth for q in questions)
    assert max(counts.values()) - min(counts.values()) <= 1  # 7/7/6: dealt class by class
    small = quiz.plan_questions(make_pool(per_class=3), spec(), CLASSES)
    assert len(small) == 9  # never more questions than images


def test_dealing_stops_at_the_quiz_length_with_the_same_order():
    # Unequal classes, as in PBC: the long tail of one class is what a limit saves dealing.
    pool = make_pool(per_class=120)
    pool = [c for c in pool if c.truth != "eosinophil"] + pool[:10]  # 10 eosinophils, 120 others
    assert Counter(c.truth for c in pool)["eosinophil"] == 10
    everything = quiz.balanced_order(pool, np.random.RandomState(7))
    first_50 = quiz.balanced_order(pool, np.random.RandomState(7), limit=50)
    assert len(everything) == len(pool) and first_50 == everything[:50]
    assert quiz.balanced_order(pool, np.random.RandomState(7), limit=10_000) == everything


def test_no_image_is_asked_twice():
    pool = make_pool(per_class=20)
    practice = quiz.plan_questions(pool, spec(mode="practice", length=quiz.PRACTICE_LENGTH), CLASSES)
    assert len(practice) == len(pool)
    assert len({q.image_id for q in practice}) == len(practice)

    adaptive = spec(difficulty="adaptive", length=50)
    answers = []
    question = quiz.plan_questions(pool, adaptive, CLASSES)[0]
    while question is not None:
        answers.append(answer_to(question, "neutrophil", adaptive))
        question = quiz.next_adaptive_question(pool, adaptive, CLASSES, answers)
    assert len(answers) == 50
    assert len({a.image_id for a in answers}) == 50


def test_adaptive_choice_favours_missed_classes():
    pool = make_pool(per_class=200)
    adaptive = spec(difficulty="adaptive", length=150)
    answers = []
    question = quiz.next_adaptive_question(pool, adaptive, CLASSES, answers)
    while question is not None:
        # A student who always mistakes eosinophils for neutrophils and knows the rest.
        given = "neutrophil" if question.truth == "eosinophil" else question.truth
        answers.append(answer_to(question, given, adaptive))
        question = quiz.next_adaptive_question(pool, adaptive, CLASSES, answers)
    asked = Counter(a.truth for a in answers[10:])  # after a short warm-up
    assert asked["eosinophil"] > 2 * asked["lymphocyte"]
    assert asked["eosinophil"] > 2 * asked["neutrophil"]
    boxes = quiz.leitner_boxes(answers, CLASSES)
    assert boxes == {"eosinophil": 1, "lymphocyte": 3, "neutrophil": 3}
    weights = quiz.adaptive_weights(answers, CLASSES)
    assert weights["eosinophil"] == 4 * weights["lymphocyte"]


def test_adaptive_first_question_is_shared_and_history_is_reproducible():
    pool = make_pool()
    adaptive = spec(difficulty="adaptive")
    first = quiz.plan_questions(pool, adaptive, CLASSES)
    assert first == quiz.plan_questions(pool, adaptive, CLASSES)
    history = [answer_to(first[0], "lymphocyte", adaptive)]
    assert quiz.next_adaptive_question(pool, adaptive, CLASSES, history) == \
        quiz.next_adaptive_question(pool, adaptive, CLASSES, history)


def with_predictions(pool):
    """The model is right and sure on even images, wrong on every fifth, unsure on the rest."""
    out = []
    for i, c in enumerate(pool):
        if i % 5 == 0:
            wrong = "neutrophil" if c.truth == "eosinophil" else "eosinophil"
            out.append(replace(c, predicted=wrong, confidence=0.6, second=c.truth,
                               second_probability=0.3))
        else:
            second = "neutrophil" if c.truth == "eosinophil" else "lymphocyte"
            if second == c.truth:
                second = "monocyte"
            out.append(replace(c, predicted=c.truth, confidence=0.95 if i % 2 == 0 else 0.5,
                               second=second, second_probability=0.04))
    return out


def test_typical_and_hard_difficulties_filter_on_the_model():
    pool = with_predictions(make_pool())
    typical = quiz.select_candidates(pool, "typical", CLASSES)
    assert typical and all(c.model_correct and c.confidence >= quiz.TYPICAL_CONFIDENCE
                           for c in typical)
    hard = quiz.select_candidates(pool, "hard", CLASSES)
    pairs = quiz.confusable_pairs(CLASSES)
    assert ("eosinophil", "neutrophil") in pairs and ("neutrophil", "eosinophil") in pairs
    assert all(not c.model_correct or (c.truth, c.second) in pairs for c in hard)
    assert any(not c.model_correct for c in hard)
    assert any(c.model_correct and c.truth == "eosinophil" for c in hard)  # look-alike second choice
    assert not any(c.model_correct and c.truth == "lymphocyte" for c in hard)
    # Look-alikes the model barely considered are hard only when too few others are.
    sure = [replace(c, second_probability=0.001) if c.model_correct else c for c in pool]
    assert all(not c.model_correct for c in quiz.select_candidates(sure, "hard", CLASSES, minimum=5))
    topped_up = quiz.select_candidates(sure, "hard", CLASSES, minimum=25)
    assert len(topped_up) == 25 and sum(c.model_correct for c in topped_up) == 7
    with pytest.raises(ValueError):
        quiz.select_candidates(make_pool(), "hard", CLASSES)  # no predictions yet
    exam = quiz.plan_questions(pool, spec(difficulty="hard"), CLASSES)
    assert {q.image_id for q in exam} <= {c.image_id for c in hard}
    assert all(q.model_answer is not None for q in exam)


def test_codes_nicknames_and_specs_are_checked():
    code = quiz.new_code()
    assert quiz.normalize_code(code) == code and len(code) == 9
    assert quiz.normalize_code("  k7qm-2xrd ") == "K7QM-2XRD"
    for bad in ("", "ab", "no way!", "x" * 30):
        with pytest.raises(ValueError):
            quiz.normalize_code(bad)
    assert quiz.normalize_nickname("  Dr   House ") == "Dr House"
    with pytest.raises(ValueError):
        quiz.normalize_nickname("   ")
    with pytest.raises(ValueError):
        QuizSpec("CODE", "m", "sprint", "mixed", 20)
    with pytest.raises(ValueError):
        QuizSpec("CODE", "m", "exam", "mixed", 0)
    assert spec().seed == spec().seed != spec(code="OTHER").seed


def scripted_answers() -> list[Answer]:
    """Two students, four images; the model misses image 4."""
    exam = spec()
    questions = [quiz.Question(i, f"pbc/img{i}.jpg", Path(f"/x/{i}.jpg"), truth, model, 0.9)
                 for i, (truth, model) in enumerate([("eosinophil", "eosinophil"),
                                                     ("neutrophil", "neutrophil"),
                                                     ("lymphocyte", "lymphocyte"),
                                                     ("eosinophil", "neutrophil")], start=1)]
    ana = ["eosinophil", "neutrophil", "lymphocyte", "neutrophil"]
    ben = ["neutrophil", "neutrophil", "eosinophil", "eosinophil"]
    answers = [answer_to(q, a, exam, "s-ana", "ana", seconds=2.0 * q.number, hint=q.number == 2)
               for q, a in zip(questions, ana)]
    answers += [answer_to(q, b, exam, "s-ben", "ben", seconds=4.0) for q, b in zip(questions, ben)]
    return answers


def test_scoring_and_statistics_on_a_scripted_run():
    answers = scripted_answers()
    ana = [a for a in answers if a.nickname == "ana"]
    result = quiz.score(ana)
    assert (result.answered, result.correct) == (4, 3)
    assert result.points == 10 + 5 + 10 + 0  # the hint halves question 2
    assert result.max_points == 40
    assert (result.streak, result.best_streak) == (0, 3)
    assert result.mean_seconds == pytest.approx(5.0)
    assert (result.model_correct, result.model_answered) == (3, 4)
    assert result.accuracy == 0.75

    table = quiz.class_accuracy(answers, CLASSES).set_index("class")
    assert table.loc["eosinophil", "answered"] == 4 and table.loc["eosinophil", "correct"] == 2
    assert table.loc["eosinophil", "model_accuracy"] == 0.5
    assert table.loc["lymphocyte", "accuracy"] == 0.5

    matrix = quiz.confusion_matrix(answers, CLASSES)
    assert matrix.sum() == 8 and np.trace(matrix) == 5
    assert matrix[0, 2] == 2  # eosinophils answered as neutrophils (ana once, ben once)
    assert matrix[2, 2] == 2 and matrix[1, 0] == 1

    pairs = quiz.confused_pairs(answers)
    assert pairs.iloc[0].tolist() == ["Eosinophil", "Neutrophil", 2]

    hardest = quiz.hardest_images(answers)
    assert hardest.iloc[0]["accuracy"] == 0.5 and hardest.iloc[-1]["accuracy"] == 1.0
    assert hardest.iloc[-1]["image_id"] == "pbc/img2.jpg"

    students = quiz.student_results(answers)
    assert students["nickname"].tolist() == ["ana", "ben"]
    assert students["correct"].tolist() == [3, 2]

    versus = quiz.human_vs_model(answers)
    assert (versus.answered, versus.human_correct, versus.model_correct) == (8, 5, 6)
    assert (versus.both_correct, versus.human_only, versus.model_only, versus.neither) == (4, 1, 2, 1)

    frame = quiz.answers_frame(answers)
    assert len(frame) == 8 and {"quiz_code", "nickname", "correct", "seconds", "points"} <= set(frame)


def write_image(path: Path, colour) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (40, 40), colour).save(path)


def test_manifest_pool_uses_only_validation_and_test_images(tmp_path):
    data = tmp_path / "data"
    rows = ["path,label,split,sha1"]
    for label in CLASSES:
        for split in ("train", "val", "test"):
            relative = f"{label}/{split}.png"
            write_image(data / "pbc" / relative, (10, 20, 30))
            rows.append(f"{relative},{label},{split},x")
    rows.append("neutrophil/gone.png,neutrophil,test,x")  # listed, but not on this machine
    model = tmp_path / "model"
    model.mkdir()
    (model / "split.csv").write_text("\n".join(rows) + "\n")
    metadata = {"classes": CLASSES, "data": {"dataset": "pbc", "split_manifest": "split.csv"}}
    pool = manifest_pool(ModelFolder.from_metadata(metadata, model), data)
    assert len(pool) == 6
    assert all("/train" not in c.image_id and c.image_id.startswith("pbc/") for c in pool)
    assert all(c.path.is_file() for c in pool)
    assert manifest_pool(ModelFolder.from_metadata(metadata, tmp_path),
                         data) == []  # no manifest, no pool


def test_predicted_pool_uses_the_explorers_cache_real_data(owning_model_folder, owning_classifier,
                                                            small_data, tmp_path, monkeypatch):
    from hematovision_core import split_predictions

    pool = manifest_pool(owning_classifier.model_folder, small_data)
    assert len(pool) == 9  # 1 val + 2 test images per class
    seen = []
    first = predicted_pool(owning_classifier, pool, tmp_path, small_data,
                           progress=lambda done, total: seen.append((done, total)))
    assert len(first) == 9 and seen[-1] == (9, 9)
    assert all(c.predicted in CLASSES and 0 < c.confidence <= 1 and c.second != c.predicted
               for c in first)
    monkeypatch.setattr(split_predictions, "run_model",
                        lambda *a, **k: pytest.fail("classified again instead of using the cache"))
    assert predicted_pool(owning_classifier, pool, tmp_path, small_data) == first


def test_answers_csv_keeps_formula_nicknames_inert():
    import csv
    import io

    answers = scripted_answers()
    nicknames = ['=HYPERLINK("http://x","y")', "=cmd|' /C calc'!A0", "+SUM(1,2)", "@SUM(1)",
                 "-1+2", "\t=1", "\r=1"]
    evil = [replace(answers[0], nickname=name) for name in nicknames]
    rows = list(csv.DictReader(io.StringIO(quiz.answers_csv(evil + answers).decode("utf-8"))))
    assert [row["nickname"] for row in rows[:len(nicknames)]] == ["'" + n for n in nicknames]
    assert rows[-1]["nickname"] == "ben" and rows[-1]["model_confidence"] == "0.9"
    assert list(rows[0]) == list(quiz.answers_frame(answers).columns)


def test_stored_times_read_as_a_date_and_time():
    from hematovision_core.quiz import readable_time

    assert readable_time("2026-12-02T15:43:07+00:00") == "2 Dec 2026, 15:43 UTC"
    assert readable_time("2026-12-02T16:43:07+01:00") == "2 Dec 2026, 15:43 UTC"
    assert readable_time("not a time") == "not a time"


def test_class_accuracy_names_the_classes_as_the_model_does():
    question = quiz.Question(1, "pbc/eosinophil/1.jpg", Path("/x.jpg"), "eosinophil")
    answers = [answer_to(question, "eosinophil", spec())]
    shown = {"eosinophil": "Eo", "lymphocyte": "Ly", "neutrophil": "Ne"}
    assert list(quiz.class_accuracy(answers, CLASSES, shown)["cell"]) == ["Eo", "Ly", "Ne"]
    assert list(quiz.class_accuracy(answers, CLASSES)["cell"]) == [
        "Eosinophil", "Lymphocyte", "Neutrophil"]  # no model at hand: the cards' names
