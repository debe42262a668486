"""A student's browser session as a separate process, for tests of many writers at once.

    python tests/answer_writer.py URL SESSION COUNT GO_FILE [--hang]

Waits until GO_FILE exists (so every writer starts together), saves COUNT answers one by one
through `storage.save_answer`, then prints "done". With --hang it then opens one more
transaction, inserts answer COUNT+1, prints "inserted" and sleeps without committing: the test
kills it there (SIGKILL), mid-transaction.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from hematovision_core import database, quiz, storage  # noqa: E402

START_TIMEOUT_SECONDS = 120
HANG_SECONDS = 120  # the test kills it long before; bounded in case it does not


def answer(session: str, number: int) -> quiz.Answer:
    spec = quiz.QuizSpec("WRITERS", "tiny", "practice", "mixed", 200)
    question = quiz.Question(number, f"pbc/neutrophil/{number}.jpg", Path("/x.jpg"),
                             "neutrophil", "neutrophil", 0.9)
    return quiz.make_answer(spec, session, session, question, "neutrophil", 1.0)


def main(url: str, session: str, count: int, go_file: str, hang: bool) -> None:
    database.engine_for(url)  # connect and check the schema before the start signal
    deadline = time.monotonic() + START_TIMEOUT_SECONDS
    while not Path(go_file).exists():
        if time.monotonic() > deadline:
            sys.exit("no start signal")
        time.sleep(0.01)
    for number in range(1, count + 1):
        storage.save_answer(url, answer(session, number))
    print("done", flush=True)
    if hang:
        with database.engine_for(url).connect().execution_options(sqlite_immediate=True) as connection:
            with connection.begin():
                storage.insert_answers(connection, [answer(session, count + 1)])
                print("inserted", flush=True)
                time.sleep(HANG_SECONDS)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4], "--hang" in sys.argv[5:])
