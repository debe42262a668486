"""The morphology quiz: which images to ask, in which order, how answers score, what they add up to.

A quiz is a `QuizSpec` (code, model, mode, difficulty, length). The code seeds the random order, so
every student who types the same code gets the same questions in the same order: an instructor can
run one quiz for a whole lecture hall. The adaptive difficulty is the exception by design: its
first question is shared, the next ones follow each student's own mistakes (Leitner boxes per
class: a miss sends the class back to box 1, which is drawn most often).

Nothing here imports streamlit; `storage` keeps the answers, `quiz_pool` finds the images.
"""

from __future__ import annotations

import hashlib
import re
import secrets
import threading
from collections import Counter, OrderedDict, defaultdict
from dataclasses import asdict, dataclass, fields
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
import pandas as pd

from hematovision_core.csv_safety import frame_to_csv
from hematovision_core.morphology import card_for
from hematovision_core.quiz_pool import Candidate

MODES = ("practice", "exam", "versus")
MODE_LABELS = {"practice": "Practice", "exam": "Exam", "versus": "Versus the model"}
DIFFICULTIES = ("mixed", "typical", "hard", "adaptive")
DIFFICULTY_LABELS = {
    "mixed": "Mixed",
    "typical": "Typical (the model is sure)",
    "hard": "Hard (look-alikes and the model's mistakes)",
    "adaptive": "Adaptive (more of what you miss)",
}
NEEDS_PREDICTIONS = ("typical", "hard")  # difficulties that filter on the model's answers

EXAM_LENGTH = 20
PRACTICE_LENGTH = 200  # practice goes on "as long as they like": a long queue without repeats
MAX_LENGTH = 200
POINTS_CORRECT = 10
HINT_COST = 5  # a right answer after the hint earns POINTS_CORRECT - HINT_COST
TYPICAL_CONFIDENCE = 0.9  # "typical": the model is right with at least this confidence
HARD_SECOND_PROBABILITY = 0.02  # "hard" look-alikes: the model gave the look-alike at least this
LEITNER_BOXES = 3  # box 1 (missed) is drawn 4x as often as box 3 (mastered)

CODE_ALPHABET = "ABCDEFGHJKMNPQRSTUVWXYZ23456789"  # no 0/O or 1/I/L to misread on a slide
CODE_PATTERN = re.compile(r"^[A-Z0-9][A-Z0-9-]{2,23}$")


@dataclass(frozen=True)
class QuizSpec:
    code: str  # the quiz code students type; normalised upper case
    model_name: str  # the model's folder name: part of the seed
    mode: str  # one of MODES
    difficulty: str  # one of DIFFICULTIES
    length: int  # questions in the quiz (practice: the length of its queue)

    def __post_init__(self):
        if self.mode not in MODES:
            raise ValueError(f"Unknown quiz mode {self.mode!r}; choose one of {', '.join(MODES)}.")
        if self.difficulty not in DIFFICULTIES:
            raise ValueError(f"Unknown difficulty {self.difficulty!r}; "
                             f"choose one of {', '.join(DIFFICULTIES)}.")
        if not 1 <= self.length <= MAX_LENGTH:
            raise ValueError(f"A quiz has 1 to {MAX_LENGTH} questions, not {self.length}.")

    @property
    def seed(self) -> int:
        """The random seed: the same for everyone with this code, model, mode and difficulty."""
        key = "|".join([self.code, self.model_name, self.mode, self.difficulty])
        return int.from_bytes(hashlib.sha256(key.encode()).digest()[:4], "big")


@dataclass(frozen=True)
class Question:
    number: int  # 1-based position in the quiz
    image_id: str  # path relative to the data folder: what is stored
    path: Path  # the image on this machine
    truth: str  # true class name
    model_answer: str | None = None  # None until the model has looked at it
    model_confidence: float | None = None


@dataclass(frozen=True)
class Answer:
    quiz_code: str
    session_id: str  # one browser session; a student may take several quizzes
    nickname: str
    model_name: str
    mode: str
    difficulty: str
    question_number: int
    image_id: str
    truth: str
    answer: str
    model_answer: str | None
    model_confidence: float | None
    correct: bool
    hint_used: bool
    seconds: float  # from the question appearing to the answer
    answered_at: str  # ISO 8601, UTC
    # The kept nickname (`students`) the answer belongs to; None for a student who keeps none,
    # as every answer was before Review mode. Last, with a default: old callers need not pass it.
    student_id: int | None = None

    @property
    def points(self) -> int:
        """Points earned: nothing for a wrong answer, less after the hint."""
        if not self.correct:
            return 0
        return POINTS_CORRECT - (HINT_COST if self.hint_used else 0)

    @property
    def model_correct(self) -> bool | None:
        """Whether the model got this image right (None if its answer is unknown)."""
        return None if self.model_answer is None else self.model_answer == self.truth


ANSWER_FIELDS = tuple(f.name for f in fields(Answer))


@dataclass(frozen=True)
class Score:
    answered: int
    correct: int
    points: int
    max_points: int
    streak: int  # right answers in a row, up to the last one
    best_streak: int
    mean_seconds: float
    model_answered: int  # answers where the model's answer is known
    model_correct: int

    @property
    def accuracy(self) -> float:
        """Share of right answers (0 before any answer)."""
        return self.correct / self.answered if self.answered else 0.0

    @property
    def model_accuracy(self) -> float:
        """The model's share of right answers on the same images."""
        return self.model_correct / self.model_answered if self.model_answered else 0.0


@dataclass(frozen=True)
class HumanVsModel:
    answered: int  # images both answered
    human_correct: int
    model_correct: int
    both_correct: int
    human_only: int  # the student right, the model wrong
    model_only: int
    neither: int


# ---- quiz codes ------------------------------------------------------------------------------


def new_code() -> str:
    """A fresh, easy-to-read quiz code such as "K7QM-2XRD"."""
    letters = [secrets.choice(CODE_ALPHABET) for _ in range(8)]
    return "".join(letters[:4]) + "-" + "".join(letters[4:])


def normalize_code(text: str) -> str:
    """Upper-case a typed code and drop spaces; ValueError if it is not a usable code."""
    code = re.sub(r"\s+", "", text or "").upper()
    if not CODE_PATTERN.match(code):
        raise ValueError("A quiz code is 3 to 24 letters, digits or dashes, e.g. K7QM-2XRD.")
    return code


def normalize_nickname(text: str) -> str:
    """Trim a nickname; ValueError if it is empty or too long (no other personal data is asked)."""
    nickname = " ".join((text or "").split())
    if not nickname:
        raise ValueError("Enter a nickname first (any name; it is only shown to your instructor).")
    if len(nickname) > 30:
        raise ValueError("Keep the nickname to 30 characters or fewer.")
    return nickname


def display_name(class_name: str) -> str:
    """A readable name for a class key where no model is at hand (the instructor's reports span
    models): its morphology card's name, the one training writes into model.json."""
    card = card_for(class_name)
    return card.display_name if card else class_name.replace("_", " ").capitalize()


# ---- choosing questions ----------------------------------------------------------------------


def confusable_pairs(classes: Sequence[str]) -> frozenset[tuple[str, str]]:
    """Pairs of the model's classes that the morphology cards list as look-alikes (both orders)."""
    pairs = set()
    for a in classes:
        for b in classes:
            card_a, card_b = card_for(a), card_for(b)
            if a == b or card_a is None or card_b is None:
                continue
            if card_b.cell in card_a.look_alikes or card_a.cell in card_b.look_alikes:
                pairs.add((a, b))
    return frozenset(pairs)


def select_candidates(pool: Sequence[Candidate], difficulty: str,
                      classes: Sequence[str], minimum: int = EXAM_LENGTH) -> list[Candidate]:
    """The images a difficulty may ask about (typical and hard need the model's predictions)."""
    # typical: the model is right with confidence >= TYPICAL_CONFIDENCE (every image it gets right
    # when fewer than `minimum` qualify); hard: the model is wrong, or its second choice is a
    # classic look-alike of the true class with some weight; mixed and adaptive: the whole pool.
    if difficulty not in DIFFICULTIES:
        raise ValueError(f"Unknown difficulty {difficulty!r}.")
    if difficulty not in NEEDS_PREDICTIONS:
        return list(pool)
    if any(c.predicted is None for c in pool):
        raise ValueError(f"The {difficulty} difficulty needs the model's predictions on the pool.")
    if difficulty == "typical":
        right = [c for c in pool if c.model_correct]
        sure = [c for c in right if c.confidence >= TYPICAL_CONFIDENCE]
        return sure if len(sure) >= minimum else right
    pairs = confusable_pairs(classes)
    wrong = [c for c in pool if not c.model_correct]
    # A strong model's second choice is nearly always a look-alike, usually at under 1%: only
    # the images where it hesitated are hard. Top up with the most hesitant ones if too few.
    look_alikes = sorted((c for c in pool if c.model_correct and (c.truth, c.second) in pairs),
                         key=lambda c: (-c.second_probability, c.image_id))
    hesitant = [c for c in look_alikes if c.second_probability >= HARD_SECOND_PROBABILITY]
    extra = look_alikes[len(hesitant):max(len(hesitant), minimum - len(wrong))]
    return wrong + hesitant + extra


def balanced_order(candidates: Sequence[Candidate], rng: np.random.RandomState,
                   limit: int | None = None) -> list[Candidate]:
    """Shuffle within each class, then deal one image per class per round, classes in random order.

    Dealing stops at `limit` images: the order up to there is the same, and a lecture hall
    starting a practice quiz (200 questions) from 4,616 images at once spent a quarter of the
    server's time dealing the rest (py-spy during `python -m benchmarks.load --journey quiz`).
    """
    # A 20-question exam over 8 classes thus shows every class two or three times, however
    # unequal the classes are in the data (PBC has 3x more neutrophils than basophils).
    by_class: dict[str, list[Candidate]] = defaultdict(list)
    for candidate in sorted(candidates, key=lambda c: c.image_id):
        by_class[candidate.truth].append(candidate)
    queues = {}
    for label in sorted(by_class):
        items = by_class[label]
        queues[label] = [items[i] for i in rng.permutation(len(items))]
    order = []
    limit = len(candidates) if limit is None else limit
    while len(order) < limit and any(queues.values()):
        labels = [label for label in sorted(queues) if queues[label]]
        for index in rng.permutation(len(labels)):
            order.append(queues[labels[index]].pop())
    return order[:limit]


def to_question(candidate: Candidate, number: int) -> Question:
    """A quiz question from a pool candidate (with the model's answer when it is known)."""
    return Question(number, candidate.image_id, candidate.path, candidate.truth,  # a Path already
                    candidate.predicted, candidate.confidence)


# A lecture hall starts one quiz code: the same spec on the same (cached) pool, so the same plan.
# Planning sorts and deals the whole pool (4,616 images for PBC): 8% of the server's time while
# 200 students opened and started a quiz at once (py-spy). The plans of the last PLANS_KEPT
# (pool, spec) pairs are kept; an entry holds its pool, so the pool's id cannot be reused while
# the entry exists.
PLANS_KEPT = 16
_plans: OrderedDict[tuple, tuple[Sequence[Candidate], tuple[Question, ...]]] = OrderedDict()
_plans_lock = threading.Lock()


def plan_questions(pool: Sequence[Candidate], spec: QuizSpec, classes: Sequence[str]) -> list[Question]:
    """The quiz's questions in order, the same for the same spec (adaptive: only the first).

    Computed once per pool object, spec and classes (see PLANS_KEPT): a pool must not be changed
    in place once planned from, as the process-wide cached pools never are."""
    key = (id(pool), spec, tuple(classes))
    with _plans_lock:
        kept = _plans.get(key)
        if kept is not None and kept[0] is pool:
            _plans.move_to_end(key)
            return list(kept[1])
    questions = tuple(_plan_questions(pool, spec, classes))
    with _plans_lock:
        _plans[key] = (pool, questions)
        _plans.move_to_end(key)
        while len(_plans) > PLANS_KEPT:
            _plans.popitem(last=False)
    return list(questions)


def _plan_questions(pool: Sequence[Candidate], spec: QuizSpec,
                    classes: Sequence[str]) -> list[Question]:
    if spec.difficulty == "adaptive":
        first = next_adaptive_question(pool, spec, classes, [])
        return [first] if first else []
    candidates = select_candidates(pool, spec.difficulty, classes,
                                   minimum=min(spec.length, EXAM_LENGTH))
    order = balanced_order(candidates, np.random.RandomState(spec.seed), limit=spec.length)
    return [to_question(c, number) for number, c in enumerate(order, start=1)]


def leitner_boxes(answers: Sequence[Answer], classes: Sequence[str]) -> dict[str, int]:
    """Box per class, replaying answers in order: right moves a class up a box, wrong back to 1."""
    boxes = {label: 1 for label in classes}
    for answer in answers:
        if answer.truth in boxes:
            boxes[answer.truth] = min(boxes[answer.truth] + 1, LEITNER_BOXES) if answer.correct else 1
    return boxes


def adaptive_weights(answers: Sequence[Answer], classes: Sequence[str]) -> dict[str, float]:
    """How likely each class is to come next: box 1 weighs 2**(LEITNER_BOXES-1), the top box 1."""
    return {label: 2.0 ** (LEITNER_BOXES - box) for label, box in leitner_boxes(answers, classes).items()}


def next_adaptive_question(pool: Sequence[Candidate], spec: QuizSpec, classes: Sequence[str],
                           answers: Sequence[Answer]) -> Question | None:
    """Draw the next class by its Leitner weight, then an image of it not asked yet (or None)."""
    asked = {a.image_id for a in answers}
    remaining: dict[str, list[Candidate]] = defaultdict(list)
    for candidate in sorted(pool, key=lambda c: c.image_id):
        if candidate.image_id not in asked:
            remaining[candidate.truth].append(candidate)
    labels = [label for label in classes if remaining[label]]
    if not labels or len(answers) >= spec.length:
        return None
    weights = adaptive_weights(answers, classes)
    p = np.array([weights[label] for label in labels])
    # Seeded by the code and the question number: the same history gives the same next question.
    rng = np.random.RandomState((spec.seed + len(answers)) % 2**32)
    label = labels[rng.choice(len(labels), p=p / p.sum())]
    candidate = remaining[label][rng.randint(len(remaining[label]))]
    return to_question(candidate, len(answers) + 1)


def readable_time(iso: str) -> str:
    """"2 Dec 2026, 15:43 UTC" for a stored ISO 8601 time; the text itself if it is not one."""
    try:
        moment = datetime.fromisoformat(iso)
    except (TypeError, ValueError):
        return str(iso)
    if moment.tzinfo is not None:
        moment = moment.astimezone(timezone.utc)
    return f"{moment.day} {moment:%b %Y, %H:%M} UTC"


def make_answer(spec: QuizSpec, session_id: str, nickname: str, question: Question, answer: str,
                seconds: float, hint_used: bool = False, answered_at: datetime | None = None,
                student_id: int | None = None) -> Answer:
    """Record a student's answer to a question (the question must carry the model's answer)."""
    moment = answered_at or datetime.now(timezone.utc)
    return Answer(
        quiz_code=spec.code, session_id=session_id, nickname=nickname, model_name=spec.model_name,
        mode=spec.mode, difficulty=spec.difficulty, question_number=question.number,
        image_id=question.image_id, truth=question.truth, answer=answer,
        model_answer=question.model_answer, model_confidence=question.model_confidence,
        correct=answer == question.truth, hint_used=bool(hint_used),
        seconds=round(max(float(seconds), 0.0), 2),
        answered_at=moment.astimezone(timezone.utc).isoformat(timespec="seconds"),
        student_id=student_id,
    )


# ---- scores and statistics -------------------------------------------------------------------


def score(answers: Sequence[Answer]) -> Score:
    """Score, streaks, mean time and the model's record on the same images."""
    streak = best = 0
    for answer in answers:
        streak = streak + 1 if answer.correct else 0
        best = max(best, streak)
    judged = [a for a in answers if a.model_answer is not None]
    return Score(
        answered=len(answers),
        correct=sum(a.correct for a in answers),
        points=sum(a.points for a in answers),
        max_points=POINTS_CORRECT * len(answers),
        streak=streak,
        best_streak=best,
        mean_seconds=float(np.mean([a.seconds for a in answers])) if answers else 0.0,
        model_answered=len(judged),
        model_correct=sum(bool(a.model_correct) for a in judged),
    )


def answer_classes(answers: Sequence[Answer]) -> list[str]:
    """Every class that appears as a truth or an answer, sorted."""
    return sorted({a.truth for a in answers} | {a.answer for a in answers})


# Each figure below is a tally (here over `Answer` objects; in `class_report`, GROUP BY in SQL)
# turned into a table by a `*_frame` function both share, so the two give the same tables.


ClassTally = tuple[int, int, int, int]  # answered, correct, judged by the model, model correct


def class_accuracy(answers: Sequence[Answer], classes: Sequence[str],
                   names: Mapping[str, str] | None = None) -> pd.DataFrame:
    """One row per class: answered, correct, accuracy, and the model's accuracy on those images
    (`names`: class -> shown name, a model's display names; else `display_name`)."""
    tallies: dict[str, ClassTally] = {}
    for answer in answers:
        answered, correct, judged, model_correct = tallies.get(answer.truth, (0, 0, 0, 0))
        tallies[answer.truth] = (answered + 1, correct + answer.correct,
                                 judged + (answer.model_answer is not None),
                                 model_correct + bool(answer.model_correct))
    return class_accuracy_frame(tallies, classes, names)


def class_accuracy_frame(tallies: dict[str, ClassTally], classes: Sequence[str],
                         names: Mapping[str, str] | None = None) -> pd.DataFrame:
    """`class_accuracy` from per-class tallies (classes with no answer: NaN accuracies)."""
    rows = []
    for label in classes:
        answered, correct, judged, model_correct = tallies.get(label, (0, 0, 0, 0))
        rows.append({
            "class": label,
            "cell": names[label] if names else display_name(label),
            "answered": answered,
            "correct": correct,
            "accuracy": correct / answered if answered else np.nan,
            "model_accuracy": model_correct / judged if judged else np.nan,
        })
    return pd.DataFrame(rows, columns=["class", "cell", "answered", "correct", "accuracy",
                                       "model_accuracy"])


def confusion_matrix(answers: Sequence[Answer], classes: Sequence[str]) -> np.ndarray:
    """(num_classes, num_classes) counts: rows are the true class, columns the student's answer."""
    return confusion_matrix_from_counts(Counter((a.truth, a.answer) for a in answers), classes)


def confusion_matrix_from_counts(counts: dict[tuple[str, str], int],
                                 classes: Sequence[str]) -> np.ndarray:
    """`confusion_matrix` from (truth, answer) -> count; pairs outside `classes` are left out."""
    index = {label: i for i, label in enumerate(classes)}
    matrix = np.zeros((len(classes), len(classes)), dtype=int)
    for (truth, given), count in counts.items():
        if truth in index and given in index:
            matrix[index[truth], index[given]] += count
    return matrix


def confused_pairs(answers: Sequence[Answer], top: int = 5) -> pd.DataFrame:
    """The most frequent mistakes: true class, answer given, count."""
    return confused_pairs_frame(Counter((a.truth, a.answer) for a in answers if not a.correct), top)


def confused_pairs_frame(mistakes: dict[tuple[str, str], int], top: int = 5) -> pd.DataFrame:
    """`confused_pairs` from (truth, wrong answer) -> count: most frequent first, ties by name."""
    rows = [{"truth": display_name(t), "answered as": display_name(g), "count": n}
            for (t, g), n in sorted(mistakes.items(), key=lambda item: (-item[1], item[0]))[:top]]
    return pd.DataFrame(rows, columns=["truth", "answered as", "count"])


def hardest_images(answers: Sequence[Answer], top: int = 8) -> pd.DataFrame:
    """Images with the lowest share of right answers (ties: most attempts first)."""
    by_image: dict[str, list[Answer]] = defaultdict(list)
    for answer in answers:
        by_image[answer.image_id].append(answer)
    rows = []
    for image_id, attempts in by_image.items():
        wrong = Counter(a.answer for a in attempts if not a.correct)
        rows.append({
            "image_id": image_id,
            "truth": attempts[0].truth,
            "attempts": len(attempts),
            "accuracy": sum(a.correct for a in attempts) / len(attempts),
            "common_mistake": wrong.most_common(1)[0][0] if wrong else "",  # ties: the first made
            "model_answer": attempts[0].model_answer or "",
        })
    return hardest_images_frame(rows, top)


def hardest_images_frame(rows: list[dict], top: int = 8) -> pd.DataFrame:
    """`hardest_images` from one row per image, in any order."""
    frame = pd.DataFrame(rows, columns=["image_id", "truth", "attempts", "accuracy",
                                        "common_mistake", "model_answer"])
    return frame.sort_values(["accuracy", "attempts", "image_id"],
                             ascending=[True, False, True]).head(top).reset_index(drop=True)


def student_results(answers: Sequence[Answer]) -> pd.DataFrame:
    """One row per student session: answered, correct, accuracy, points, the model on their images."""
    by_session: dict[str, list[Answer]] = defaultdict(list)
    for answer in answers:
        by_session[answer.session_id].append(answer)
    rows = []
    for session_id, mine in by_session.items():
        result = score(mine)
        rows.append({"session_id": session_id, "nickname": mine[-1].nickname,
                     "answered": result.answered, "correct": result.correct,
                     "accuracy": result.accuracy, "points": result.points,
                     "model_accuracy": result.model_accuracy if result.model_answered else np.nan})
    return student_results_frame(rows)


def student_results_frame(rows: list[dict]) -> pd.DataFrame:
    """`student_results` from one row per session in the order of their first answers."""
    frame = pd.DataFrame(rows, columns=["session_id", "nickname", "answered", "correct", "accuracy",
                                        "points", "model_accuracy"])
    return frame.sort_values(["points", "nickname"], ascending=[False, True]).reset_index(drop=True)


def human_vs_model(answers: Sequence[Answer]) -> HumanVsModel:
    """Who got which images right, counted over answers where the model's answer is known."""
    judged = [a for a in answers if a.model_answer is not None]
    human = [a.correct for a in judged]
    model = [bool(a.model_correct) for a in judged]
    pairs = list(zip(human, model))
    return HumanVsModel(
        answered=len(judged),
        human_correct=sum(human),
        model_correct=sum(model),
        both_correct=pairs.count((True, True)),
        human_only=pairs.count((True, False)),
        model_only=pairs.count((False, True)),
        neither=pairs.count((False, False)),
    )


PERIODS = ("day", "week")
ErrorTally = tuple[int, int]  # answered, wrong


def period_start(day: str, period: str) -> str:
    """The period an ISO day ("2026-12-02") falls in: the day itself, or its week's Monday."""
    if period not in PERIODS:
        raise ValueError(f"Unknown period {period!r}; choose one of {', '.join(PERIODS)}.")
    if period == "day":
        return day
    moment = date.fromisoformat(day)
    return (moment - timedelta(days=moment.weekday())).isoformat()


def class_errors_over_time(answers: Sequence[Answer], period: str = "day") -> pd.DataFrame:
    """Per day (UTC) or week and true class: answered, wrong and the error rate."""
    tallies: dict[tuple[str, str], ErrorTally] = {}
    for answer in answers:
        key = (answer.answered_at[:10], answer.truth)
        answered, wrong = tallies.get(key, (0, 0))
        tallies[key] = (answered + 1, wrong + (not answer.correct))
    return class_errors_frame(tallies, period)


def class_errors_frame(tallies: dict[tuple[str, str], ErrorTally],
                       period: str = "day") -> pd.DataFrame:
    """`class_errors_over_time` from (ISO day, truth) -> (answered, wrong), summed per period;
    sorted by period, then class."""
    summed: dict[tuple[str, str], ErrorTally] = {}
    for (day, truth), (answered, wrong) in tallies.items():
        key = (period_start(day, period), truth)
        before = summed.get(key, (0, 0))
        summed[key] = (before[0] + answered, before[1] + wrong)
    rows = [{"period": start, "class": truth, "cell": display_name(truth), "answered": answered,
             "wrong": wrong, "error_rate": wrong / answered}
            for (start, truth), (answered, wrong) in sorted(summed.items())]
    return pd.DataFrame(rows, columns=["period", "class", "cell", "answered", "wrong",
                                       "error_rate"])


def answers_frame(answers: Sequence[Answer]) -> pd.DataFrame:
    """All stored fields of the answers plus points, for tables and the CSV export."""
    rows = [asdict(a) | {"points": a.points} for a in answers]
    return pd.DataFrame(rows, columns=list(ANSWER_FIELDS) + ["points"])


def answers_csv(answers: Sequence[Answer]) -> bytes:
    """`answers_frame` as the instructor's CSV: UTF-8 and formula-safe (students type nicknames)."""
    return frame_to_csv(answers_frame(answers))
