"""Spaced review of a student's own mistakes: a Leitner schedule per missed cell.

A student who keeps a nickname (`students`) gets a card for every cell they get wrong, in a quiz
or in a review. A card sits in one of three boxes, each reviewed after a longer wait:

    box 1: 1 day    box 2: 3 days    box 3: 7 days    then learned (no more reviews)

A right answer in a review moves the card up a box; a wrong answer, anywhere, puts it back in
box 1, due the next day. Right answers in an ordinary quiz leave cards where they are: only a
review, on the day it is due, moves a card up, so a practice round cannot skip the spacing.

A review session serves the cards due today (lowest box first), mixed with look-alikes: images of
the classes the student confuses, taken from their own wrong answers (quiz and review), so the
two cells they mix up are seen side by side over the session.

Days are calendar days in the student's own time zone (the browser's), so "due tomorrow" means
after their midnight, not the server's. Everything here is pure: the caller passes `today` (and
`now` where a time is stored), so tests run the schedule on a fake clock. `review_store` keeps
cards and reviews in the database.
"""

from __future__ import annotations

import hashlib
import math
from collections import defaultdict
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from typing import Iterable, Mapping, Sequence
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import numpy as np

from hematovision_core.quiz_pool import Candidate, image_path

REVIEW_AFTER_DAYS = {1: 1, 2: 3, 3: 7}  # box -> days until it is due again
FIRST_BOX = 1
LEARNED = 4  # past the last box: a card answered right after its 7-day wait is learned
MAX_DUE_PER_SESSION = 30  # a long absence is worked off over several days, not in one sitting
MIN_LOOK_ALIKES, MAX_LOOK_ALIKES = 2, 6  # look-alikes a session: half the due cards, within
TOP_CONFUSIONS = 3  # the student's most frequent (truth, answer) mistakes that choose look-alikes

DUE, LOOK_ALIKE = "due", "look-alike"


@dataclass(frozen=True)
class Card:
    image_id: str  # as quiz answers store it: path relative to the data folder
    truth: str  # the cell's true class
    box: int  # 1-3, or LEARNED
    due_on: date | None  # the first day it is due again; None once learned
    last_seen: str  # ISO 8601 UTC of the last answer to it
    last_answer: str  # what the student said then

    @property
    def learned(self) -> bool:
        return self.box >= LEARNED

    def is_due(self, today: date) -> bool:
        """Whether the card is waiting for a review on `today` (learned cards never are)."""
        return not self.learned and self.due_on is not None and self.due_on <= today


@dataclass(frozen=True)
class ReviewItem:
    image_id: str
    path: Path  # the image on this machine
    truth: str
    kind: str  # DUE (one of the student's cards) or LOOK_ALIKE (an image of a class they confuse)
    box: int | None  # the card's box (DUE); None for a look-alike


@dataclass(frozen=True)
class ReviewPlan:
    items: list[ReviewItem]  # the session, due cards and look-alikes mixed
    due_today: int  # every card due today that this model can ask (may exceed the session's share)
    other_model: int  # cards due today of classes this model does not know, or images not here
    confusions: list[tuple[str, str]]  # (truth, answered as) pairs that chose the look-alikes


# ---- days and clock -----------------------------------------------------------------------------


def utc_now() -> datetime:
    """The current time, UTC (one place for pages to read the clock; tests pass their own)."""
    return datetime.now(timezone.utc)


def local_day(now: datetime, time_zone: str | None = None) -> date:
    """The calendar day `now` falls on in the student's time zone (UTC if unknown or unusable)."""
    try:
        zone = ZoneInfo(time_zone) if time_zone else timezone.utc
    except (ZoneInfoNotFoundError, ValueError):  # a browser may send anything here
        zone = timezone.utc
    return now.astimezone(zone).date()


# ---- the schedule -------------------------------------------------------------------------------


def due_after(box: int, day: date) -> date | None:
    """When a card placed in `box` on `day` is due again (None: learned, never)."""
    if box >= LEARNED:
        return None
    return day + timedelta(days=REVIEW_AFTER_DAYS[box])


def missed(image_id: str, truth: str, given: str, now: datetime, today: date) -> Card:
    """The card after a wrong answer, wherever it was given: box 1, due the next day."""
    return Card(image_id, truth, FIRST_BOX, due_after(FIRST_BOX, today), iso(now), given)


def after_review(card: Card, given: str, now: datetime, today: date) -> Card:
    """The card after a review answer: right moves it up a box, wrong puts it back in box 1."""
    if given != card.truth:
        return missed(card.image_id, card.truth, given, now, today)
    box = min(card.box + 1, LEARNED)
    return Card(card.image_id, card.truth, box, due_after(box, today), iso(now), given)


def iso(moment: datetime) -> str:
    """ISO 8601 in UTC to the second, as quiz answers store their times."""
    return moment.astimezone(timezone.utc).isoformat(timespec="seconds")


# ---- streak -------------------------------------------------------------------------------------


def streak(review_days: Iterable[date], today: date) -> int:
    """Consecutive days with at least one review, up to today.

    A day not yet reviewed does not break the streak before it is over: with no review today the
    streak counts back from yesterday (0 if yesterday had none either).
    """
    days = set(review_days)
    day = today if today in days else today - timedelta(days=1)
    count = 0
    while day in days:
        count += 1
        day -= timedelta(days=1)
    return count


# ---- what to review today -----------------------------------------------------------------------


def top_confusions(mistakes: Mapping[tuple[str, str], int],
                   top: int = TOP_CONFUSIONS) -> list[tuple[str, str]]:
    """The student's most frequent (truth, answered as) mistakes, ties by name."""
    ranked = sorted(((n, pair) for pair, n in mistakes.items() if pair[0] != pair[1] and n > 0),
                    key=lambda item: (-item[0], item[1]))
    return [pair for _, pair in ranked[:top]]


def look_alike_count(due: int) -> int:
    """Look-alikes in a session: half the due cards, at least MIN_, at most MAX_LOOK_ALIKES."""
    return min(MAX_LOOK_ALIKES, max(MIN_LOOK_ALIKES, due // 2))


def session_seed(student_id: int, today: date) -> int:
    """The same look-alikes all day (a rerun or a second tab), new ones the next day."""
    key = f"{student_id}|{today.isoformat()}".encode()
    return int.from_bytes(hashlib.sha256(key).digest()[:4], "big")


def pick_look_alikes(pool: Sequence[Candidate], confusions: Sequence[tuple[str, str]], count: int,
                     exclude: set[str], rng: np.random.RandomState) -> list[Candidate]:
    """Up to `count` images of the confused classes, one class after the other.

    For "eosinophil answered as neutrophil" the session shows a neutrophil and an eosinophil:
    the class they said and the class it was. Images in `exclude` (their own cards, today's
    reviews) are left out, and no image comes twice.
    """
    order: list[str] = []
    for truth, given in confusions:
        order += [label for label in (given, truth) if label not in order]
    by_class: dict[str, list[Candidate]] = defaultdict(list)
    for candidate in sorted(pool, key=lambda c: c.image_id):
        if candidate.image_id not in exclude and candidate.truth in order:
            by_class[candidate.truth].append(candidate)
    queues = {label: [by_class[label][i] for i in rng.permutation(len(by_class[label]))]
              for label in order}
    chosen: list[Candidate] = []
    while len(chosen) < count and any(queues.values()):
        for label in order:
            if queues[label] and len(chosen) < count:
                chosen.append(queues[label].pop())
    return chosen


def mix(due: Sequence[ReviewItem], extras: Sequence[ReviewItem]) -> list[ReviewItem]:
    """The due cards in order with the look-alikes spread evenly between them (a due card first)."""
    mixed = list(due)
    for k, extra in reversed(list(enumerate(extras))):  # from the back: earlier indexes hold
        mixed.insert(math.ceil((k + 1) * len(due) / (len(extras) + 1)), extra)
    return mixed


def plan_review(cards: Sequence[Card], pool: Sequence[Candidate],
                mistakes: Mapping[tuple[str, str], int], classes: Sequence[str],
                data_dir: str | Path, today: date, student_id: int,
                reviewed_today: Iterable[str] = ()) -> ReviewPlan:
    """Today's session: due cards (lowest box, then oldest first), mixed with look-alikes.

    Only cards this model can ask about are served: their class is one of `classes` and their
    image is on this machine (a card made with another model waits for that model).
    """
    due_cards = sorted((c for c in cards if c.is_due(today)),
                       key=lambda c: (c.box, c.due_on, c.image_id))
    servable = []
    for card in due_cards:
        path = image_path(data_dir, card.image_id) if card.truth in classes else None
        if path is not None:
            servable.append(ReviewItem(card.image_id, path, card.truth, DUE, card.box))
    confusions = [pair for pair in top_confusions(mistakes, len(mistakes))
                  if pair[0] in classes and pair[1] in classes][:TOP_CONFUSIONS]
    exclude = {c.image_id for c in cards} | set(reviewed_today)
    session = servable[:MAX_DUE_PER_SESSION]
    extras = pick_look_alikes(pool, confusions, look_alike_count(len(session)), exclude,
                              np.random.RandomState(session_seed(student_id, today)))
    extra_items = [ReviewItem(c.image_id, Path(c.path), c.truth, LOOK_ALIKE, None) for c in extras]
    return ReviewPlan(mix(session, extra_items), len(servable), len(due_cards) - len(servable),
                      confusions)

