"""Load the running app with N simulated browsers at once, speaking Streamlit's own protocol.

    python -m benchmarks.load --url http://127.0.0.1:8501 --journey quiz --sessions 10 [--server-pid PID]
        [--answers 10] [--think-seconds 0] [--ramp-seconds 0] [--first-visit] [--json FILE]

Each session is one browser tab (`streamlit_client.BrowserSession`) walking one journey: the quiz
(practice mode, one shared quiz code per load run), Classify (upload, prediction and Grad-CAM)
or the Dataset Explorer (page through a cached split). With --first-visit each session first
loads the frontend (index.html and the 61 scripts and stylesheets it names) as a browser with
an empty cache does, the lecture hall's first minute. Prints per-step latencies, errors and,
given the server's pid, its CPU, memory and threads. Loopback servers only.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import secrets
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from benchmarks.server import ServerSampler
from benchmarks.streamlit_client import (BrowserSession, RunResult, load_frontend,
                                         require_loopback)
from hematovision_core import storage
from hematovision_core.config import Settings
from hematovision_core.quiz import CODE_ALPHABET

JOURNEYS = ("quiz", "classify", "explorer")
PAGES = {"quiz": "Quiz", "classify": "Classify", "explorer": "Dataset_Explorer"}  # url pathnames
MAX_SESSIONS = 500
SHOWN_ERRORS = 5


@dataclass(frozen=True)
class LoadOptions:
    url: str  # the app's base URL; loopback only
    journey: str  # one of JOURNEYS
    sessions: int  # browsers, all started at once (or spread over ramp_seconds)
    timeout: float = 300.0  # for the whole load; sessions still running then are cancelled
    step_timeout: float = 180.0  # for one step (the first Quiz or Classify run loads TensorFlow)
    answers: int = 10  # quiz: questions answered per session
    pages: int = 5  # explorer: gallery pages turned per session
    image: Path | None = None  # classify: every session uploads it (default: a PBC image each)
    ramp_seconds: float = 0.0  # spread session starts evenly over this long
    think_seconds: float = 0.0  # a pause before every step after the first: reading, typing
    first_visit: bool = False  # load index.html and its scripts first, as an empty browser cache does
    server_pid: int | None = None  # sample this process's CPU, memory and threads
    seed: int = 0  # which answer buttons the simulated students press


class StepError(RuntimeError):
    """A step of a journey failed; the session stops there."""


@dataclass
class Recorder:
    """Latencies per step and errors, shared by every session of one load run."""
    latencies: dict[str, list[float]] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)
    completed: int = 0
    current_step: dict[int, str] = field(default_factory=dict)  # session -> step now running
    # 0 (the default) is the worst case: every student clicks the moment the page is there. Real
    # students take seconds to type a nickname and a code, so the hall's opens do not compete
    # with its Start clicks; a pause (untimed) before each step after the first models that.
    think_seconds: float = 0.0

    async def step(self, session_number: int, name: str, action, step_timeout: float,
                   check=None) -> RunResult:
        """Run and time one step; StepError on a timeout, an app exception or a failed check."""
        if self.think_seconds and session_number in self.current_step:
            await asyncio.sleep(self.think_seconds)
        self.current_step[session_number] = name
        start = time.monotonic()
        try:
            result = await asyncio.wait_for(action, step_timeout)
        except asyncio.TimeoutError:
            raise StepError(f"{name}: no answer within {step_timeout:.0f} s") from None
        elapsed = time.monotonic() - start
        if isinstance(result, RunResult) and result.exceptions:
            raise StepError(f"{name}: the app showed {result.exceptions[0]}")
        problem = check(result) if check else None
        if problem:
            raise StepError(f"{name}: {problem}")
        self.latencies.setdefault(name, []).append(elapsed)
        return result


def expect_keys(*keys: str):
    """A check that the run drew widgets with these keys (else it names what the page showed)."""
    def check(result: RunResult) -> str | None:
        missing = [key for key in keys if key not in result.keys()]
        if not missing:
            return None
        shown = "; ".join(text[:120] for text in result.texts()[-3:])
        return f"no widget {missing[0]!r} on the page (it shows: {shown or 'nothing'})"
    return check


def new_quiz_code() -> str:
    """A fresh code per load run (quiz.normalize_code accepts it): its answers can be counted."""
    return "LOAD-" + "".join(secrets.choice(CODE_ALPHABET) for _ in range(8))


async def quiz_journey(browser: BrowserSession, number: int, recorder: Recorder,
                       options: LoadOptions, code: str) -> None:
    """Nickname, shared code, practice mode, start; then answer, see the feedback, next, repeated."""
    step, limit = recorder.step, options.step_timeout
    chooser = random.Random(options.seed * 100_003 + number)
    await step(number, "open page", browser.open_page(PAGES["quiz"]), limit,
               expect_keys("nickname", "quiz_code", "mode", "start"))
    await step(number, "fill form", fill_quiz_form(browser, number, code), limit,
               expect_keys("start"))
    result = await step(number, "start quiz", browser.click("start"), limit)
    for _ in range(options.answers):
        answers = [key for key in result.keys() if key.startswith("answer_")]
        if not answers:
            raise StepError(f"answer: no answer buttons (the page shows: {result.texts()[-2:]})")
        await step(number, "answer", browser.click(chooser.choice(answers)), limit,
                   feedback_check)
        result = await step(number, "next question", browser.click("next"), limit)


async def fill_quiz_form(browser: BrowserSession, number: int, code: str) -> RunResult:
    """Type the nickname and the code, pick practice mode. The page holds them in a form, so, as
    in the browser, they reach the server only with the Start click (no run of their own)."""
    for key, value in (("nickname", f"load-{number}"), ("quiz_code", code)):
        result = await browser.set_string(key, value)
        if result.exceptions:  # the step checks only the last run's
            return result
    mode = result.widget("mode")
    practice = next((o for o in mode.proto.options if "practice" in o.lower()), None)
    if practice is None:
        raise StepError(f"fill form: no practice mode among {list(mode.proto.options)}")
    if browser.widget_states[mode.id].string_value != practice:
        result = await browser.set_string("mode", practice)
    return result


def feedback_check(result: RunResult) -> str | None:
    """The practice feedback: the model's answer, its Grad-CAM and the Next button."""
    if not any("model says" in text for text in result.texts()):
        return "no feedback with the model's answer"
    if not any("Grad-CAM" in caption for caption in result.image_captions()):
        return "no Grad-CAM heatmap in the feedback"
    return expect_keys("next")(result)


def default_images(data_dir: Path, count: int) -> list[Path]:
    """`count` different real single-cell images, one per session, taken from every PBC class in
    turn: Classify caches results by file content, so one shared image would be computed once."""
    folders = sorted((data_dir / "pbc").glob("*"))
    by_class = [sorted(folder.glob("*.jpg"))[:count] for folder in folders]
    images = [image for group in zip(*[g for g in by_class if g]) for image in group][:count]
    if not images:
        raise FileNotFoundError(f"no image under {data_dir / 'pbc'}; pass --image PATH")
    return images


async def classify_journey(browser: BrowserSession, number: int, recorder: Recorder,
                           options: LoadOptions, images: list[Path]) -> None:
    """Open Classify, upload one image, wait for the run that shows the prediction and Grad-CAM."""
    step, limit = recorder.step, options.step_timeout
    image = images[number % len(images)]
    data = image.read_bytes()
    mime = "image/png" if image.suffix.lower() == ".png" else "image/jpeg"
    await step(number, "open page", browser.open_page(PAGES["classify"]), limit,
               expect_keys("uploads"))
    urls = await step(number, "upload", browser.upload("uploads", image.name, data, mime), limit)
    await step(number, "prediction+heatmap",
               browser.set_uploaded_file("uploads", image.name, len(data), urls), limit,
               prediction_check)


def prediction_check(result: RunResult) -> str | None:
    if "Predicted cell type" not in result.texts():
        return "no prediction shown"
    if not any(caption.startswith("Overlay") for caption in result.image_captions()):
        return "no Grad-CAM overlay shown"
    return None


async def explorer_journey(browser: BrowserSession, number: int, recorder: Recorder,
                           options: LoadOptions) -> None:
    """Open the explorer on its default split (the model's test split) and turn gallery pages."""
    step, limit = recorder.step, options.step_timeout

    def cached_check(result: RunResult) -> str | None:
        if "explorer_compute" in result.keys():
            return ("this split is not cached: the page offers to run the model on it. Open the "
                    "explorer once and press that button, then load it again.")
        return expect_keys("explorer_browse_page")(result)

    await step(number, "open page", browser.open_page(PAGES["explorer"]), limit, cached_check)
    for page in range(2, options.pages + 2):
        await step(number, "next page", browser.set_int("explorer_browse_page", page), limit,
                   lambda result: None if result.image_captions() else "no thumbnails shown")


async def run_session(number: int, recorder: Recorder, options: LoadOptions, extra) -> None:
    """One browser from connect to close; its first error is recorded and ends it."""
    await asyncio.sleep(options.ramp_seconds * number / max(options.sessions, 1))
    journey = {"quiz": quiz_journey, "classify": classify_journey,
               "explorer": explorer_journey}[options.journey]
    try:
        if options.first_visit:  # what a student's browser loads before the app can start
            await recorder.step(number, "first visit", load_frontend(options.url),
                                options.step_timeout)
        async with BrowserSession(options.url, receive_timeout=options.step_timeout) as browser:
            await journey(browser, number, recorder, options, *extra)
        recorder.completed += 1
    except StepError as error:
        recorder.errors.append(f"session {number}: {error}")
    except Exception as error:  # a dropped connection, a protocol surprise: one error each
        step = recorder.current_step.get(number, "connect")
        recorder.errors.append(f"session {number}: {step}: {type(error).__name__}: {error}")


async def run_sessions(options: LoadOptions, recorder: Recorder, extra) -> None:
    """All sessions at once; those still running at the global timeout are cancelled as errors."""
    tasks = [asyncio.create_task(run_session(n, recorder, options, extra))
             for n in range(options.sessions)]
    done, pending = await asyncio.wait(tasks, timeout=options.timeout)
    for task in pending:
        task.cancel()
    await asyncio.gather(*pending, return_exceptions=True)
    for number, task in enumerate(tasks):
        if task in pending:
            step = recorder.current_step.get(number, "connect")
            recorder.errors.append(f"session {number}: {step}: cancelled at the global timeout "
                                   f"({options.timeout:.0f} s)")


def percentile(values: list[float], fraction: float) -> float:
    """Nearest-rank percentile: with few samples, a value that was really measured."""
    ordered = sorted(values)
    return ordered[max(0, min(len(ordered) - 1, round(fraction * len(ordered) + 0.5) - 1))]


def run_load(options: LoadOptions) -> dict:
    """Run one load and return its report (JSON-ready): steps, errors, store and server figures."""
    require_loopback(options.url)
    if not 1 <= options.sessions <= MAX_SESSIONS:
        raise ValueError(f"--sessions must be 1 to {MAX_SESSIONS}")
    if options.journey not in JOURNEYS:
        raise ValueError(f"--journey must be one of {', '.join(JOURNEYS)}")
    settings = Settings.from_env()
    extra = ()
    if options.journey == "quiz":
        extra = (new_quiz_code(),)
    elif options.journey == "classify":
        extra = ([options.image] if options.image
                 else default_images(settings.data_dir, options.sessions),)
    sampler = ServerSampler(options.server_pid) if options.server_pid else None
    if sampler:
        sampler.start()
    recorder, start = Recorder(think_seconds=options.think_seconds), time.monotonic()
    asyncio.run(run_sessions(options, recorder, extra))
    report = {"journey": options.journey, "url": options.url, "sessions": options.sessions,
              "completed": recorder.completed, "seconds": round(time.monotonic() - start, 2),
              "steps": {name: {"count": len(values), "p50": percentile(values, 0.5),
                               "p95": percentile(values, 0.95), "max": max(values)}
                        for name, values in recorder.latencies.items()},
              "error_count": len(recorder.errors), "errors": recorder.errors[:SHOWN_ERRORS]}
    if options.journey == "quiz":
        report["quiz_code"] = extra[0]
        report["answers_expected"] = len(recorder.latencies.get("answer", []))
        report["answers_stored"] = len(storage.load_answers(settings.database, quiz_code=extra[0]))
    if sampler:
        report["server"] = asdict(sampler.stop())
    return report


def format_report(report: dict) -> str:
    """The report as a readable table."""
    lines = [f"{report['journey']}: {report['completed']} of {report['sessions']} sessions "
             f"completed in {report['seconds']:.1f} s, {report['error_count']} error(s)",
             f"{'step':<20}{'count':>7}{'p50 s':>9}{'p95 s':>9}{'max s':>9}"]
    for name, figures in report["steps"].items():
        lines.append(f"{name:<20}{figures['count']:>7}{figures['p50']:>9.2f}"
                     f"{figures['p95']:>9.2f}{figures['max']:>9.2f}")
    if "quiz_code" in report:
        lines.append(f"quiz code {report['quiz_code']}: {report['answers_stored']} answers stored "
                     f"({report['answers_expected']} answered)")
    if "server" in report:
        server, mib = report["server"], 1024 * 1024
        lines.append(f"server: {server['cpu_seconds']:.1f} CPU s "
                     f"(+{server['children_cpu_seconds']:.1f} in children), RSS {server['rss_before'] / mib:.0f} -> "
                     f"{server['rss_after'] / mib:.0f} MiB, peak {server['peak_rss'] / mib:.0f} MiB "
                     f"(children {server['peak_children_rss'] / mib:.0f} MiB), "
                     f"threads max {server['max_threads']}")
        lines.append(f"server and children together: "
                     f"{server['cpu_seconds'] + server['children_cpu_seconds']:.1f} CPU s, "
                     f"peak RSS {server['peak_total_rss'] / mib:.0f} MiB")
    lines += [f"error: {message}" for message in report["errors"]]
    return "\n".join(lines)


def parse_options(argv: list[str] | None = None) -> tuple[LoadOptions, Path | None]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--url", required=True, help="the app, e.g. http://127.0.0.1:8501")
    parser.add_argument("--journey", required=True, choices=JOURNEYS)
    parser.add_argument("--sessions", required=True, type=int, help=f"1 to {MAX_SESSIONS}")
    parser.add_argument("--server-pid", type=int, help="sample this process's CPU and memory")
    parser.add_argument("--timeout", type=float, default=300.0, help="for the whole load, s")
    parser.add_argument("--step-timeout", type=float, default=180.0, help="for one step, s")
    parser.add_argument("--answers", type=int, default=10, help="quiz answers per session")
    parser.add_argument("--pages", type=int, default=5, help="explorer pages per session")
    parser.add_argument("--image", type=Path, help="classify: the image to upload")
    parser.add_argument("--ramp-seconds", type=float, default=0.0)
    parser.add_argument("--think-seconds", type=float, default=0.0,
                        help="pause before each step after the first (a student reading, typing)")
    parser.add_argument("--first-visit", action="store_true",
                        help="first load index.html and the scripts it names, as a browser with "
                             "an empty cache does (a lecture hall's first minute)")
    parser.add_argument("--json", type=Path, help="also write the report here")
    args = parser.parse_args(argv)
    options = LoadOptions(args.url, args.journey, args.sessions, args.timeout, args.step_timeout,
                          args.answers, args.pages, args.image, args.ramp_seconds,
                          args.think_seconds, args.first_visit, args.server_pid)
    return options, args.json


def main(argv: list[str] | None = None) -> int:
    options, json_path = parse_options(argv)
    try:
        report = run_load(options)
    except (ValueError, FileNotFoundError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(format_report(report))
    if json_path:
        json_path.write_text(json.dumps(report, indent=2))
    return 1 if report["error_count"] else 0


if __name__ == "__main__":
    sys.exit(main())
