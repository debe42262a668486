"""The instructor's figures computed in SQL equal quiz.py's, computed from the answers, on both
backends: a random lecture (ties, hints, unknown model answers, renamed students) and edge cases."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from hematovision_core import class_report, quiz, storage
from hematovision_core.quiz import QuizSpec

CLASSES = ["basophil", "eosinophil", "lymphocyte", "monocyte", "neutrophil"]


def random_lecture(seed: int, students: int = 9, images: int = 12) -> list[quiz.Answer]:
    """Students answering overlapping images of one code, in interleaved order, plus noise."""
    rng = random.Random(seed)
    spec = QuizSpec("HALL-9", "tiny", "exam", "mixed", 20)
    pictures = [(f"pbc/{rng.choice(CLASSES)}/{n}.jpg", n) for n in range(images)]
    answers = []
    for turn in range(students * 6):
        student = rng.randrange(students)
        image_id, number = rng.choice(pictures)
        truth = image_id.split("/")[1]
        model = rng.choice([truth, truth, rng.choice(CLASSES), None])
        question = quiz.Question(number + 1, image_id, Path("/x.jpg"), truth, model,
                                 None if model is None else 0.5)
        given = truth if rng.random() < 0.55 else rng.choice(CLASSES)
        nickname = f"student{student:02d}" + ("-renamed" if turn > students * 5 else "")
        answers.append(quiz.make_answer(spec, f"s{student}", nickname, question, given,
                                        rng.uniform(1, 9), hint_used=rng.random() < 0.3))
    other = QuizSpec("ELSEWHERE", "tiny", "practice", "mixed", 200)
    answers.append(quiz.make_answer(other, "s0", "student00", quiz.Question(
        1, "pbc/basophil/0.jpg", Path("/x.jpg"), "basophil", "basophil", 0.9), "monocyte", 2.0))
    return answers


def assert_report_matches_quiz(report: class_report.ClassReport, answers: list[quiz.Answer]):
    classes = quiz.answer_classes(answers)
    assert report.classes == classes
    assert (report.answers, report.correct) == (len(answers), sum(a.correct for a in answers))
    assert report.accuracy == quiz.score(answers).accuracy
    assert report.versus == quiz.human_vs_model(answers)
    pd.testing.assert_frame_equal(report.students, quiz.student_results(answers))
    pd.testing.assert_frame_equal(report.class_accuracy, quiz.class_accuracy(answers, classes))
    np.testing.assert_array_equal(report.confusion, quiz.confusion_matrix(answers, classes))
    pd.testing.assert_frame_equal(report.confused_pairs, quiz.confused_pairs(answers, top=8))
    pd.testing.assert_frame_equal(report.hardest_images, quiz.hardest_images(answers, top=8))


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_sql_figures_equal_the_python_ones(database_url, seed):
    answers = random_lecture(seed)
    storage.save_answers(database_url, answers)
    lecture = [a for a in answers if a.quiz_code == "HALL-9"]
    report = class_report.class_report(database_url, "HALL-9")
    assert report.answers == len(lecture) > 40
    assert_report_matches_quiz(report, lecture)
    assert len(report.students) > 1 and report.hardest_images["common_mistake"].ne("").any()


def test_a_code_without_answers_gives_an_empty_report(database_url):
    report = class_report.class_report(database_url, "NOBODY")
    assert (report.answers, report.accuracy, report.classes) == (0, 0.0, [])
    assert report.students.empty and report.hardest_images.empty and report.confusion.shape == (0, 0)


def test_ties_follow_the_order_answers_were_given(database_url):
    # Two wrong answers given once each to one image: the first one given is its "common mistake";
    # two students with the same points and nickname keep the order of their first answers.
    spec = QuizSpec("TIES", "tiny", "exam", "mixed", 5)
    question = quiz.Question(1, "pbc/monocyte/1.jpg", Path("/x.jpg"), "monocyte", None, None)
    answers = [quiz.make_answer(spec, "b", "same", question, "neutrophil", 1.0),
               quiz.make_answer(spec, "a", "same", question, "lymphocyte", 1.0)]
    storage.save_answers(database_url, answers)
    report = class_report.class_report(database_url, "TIES")
    assert report.hardest_images["common_mistake"].tolist() == ["neutrophil"]
    assert report.students["session_id"].tolist() == ["b", "a"]
    assert_report_matches_quiz(report, answers)
