"""Files made on request (the instructor's CSV, the Classify report) that a busy server keeps
until the browser has fetched them.

Why not Streamlit's own deferred download (`st.download_button(data=callable)`): it makes the
file on the click and hands the browser a media URL that no session refers to. The end of every
script run, of *any* session, sweeps the files no session refers to, and a download survives
one sweep. A lecture hall answering a quiz ends dozens of runs a second, so the file was gone
before the browser asked for it: with 30 students answering, 0 of 7 instructor CSVs arrived,
and CI's browser test once lost one on an idle server.

So the file is made by a button of ours, kept in the session, and given to an ordinary download
button: the session refers to that file for as long as it shows the button. The file is still
made only when asked for (loading every answer or encoding a report's images on every page run
cost too much), and it is dropped when what it was made of changes. Its URL names a hash of its
content (no one guesses it), and the file goes with the session.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable
from dataclasses import dataclass
from datetime import datetime, timezone

import streamlit as st


@dataclass(frozen=True)
class Prepared:
    subject: Hashable  # what the file was made of: a quiz code and its answer count, an image...
    data: bytes
    made_at: datetime


@st.fragment  # the prepare click reruns only this, not the page's charts and images
def prepared_download(label: str, make: Callable[[], bytes], *, key: str, subject: Hashable,
                      file_name: str, mime: str, prepare_label: str,
                      errors: tuple[type[Exception], ...] = (), icon: str | None = None) -> None:
    """A "prepare" button that runs `make()` once, then the download button of its file.

    `subject` says what the file is of; when a page run passes another subject (another quiz
    code, new answers, another heatmap), the file made earlier is dropped and the prepare button
    comes back. An error of a type in `errors` (a database that is down) is shown as a message.
    """
    store = f"prepared_{key}"
    prepared: Prepared | None = st.session_state.get(store)
    if prepared is not None and prepared.subject != subject:
        del st.session_state[store]
        prepared = None
    if prepared is None:
        # A callback: it runs before this rerun draws anything, so the button is gone once the
        # file is made (drawn after the button, the file would sit under a spent button).
        st.button(prepare_label, key=f"{key}_prepare", icon=icon,
                  on_click=_prepare, args=(store, make, subject, errors))
        if failure := st.session_state.pop(f"{store}_failure", None):
            st.error(failure, icon=":material/error:")
        return
    # on_click="ignore": a download needs no rerun, and a rerun would briefly drop the file.
    st.download_button(label, prepared.data, file_name=file_name, mime=mime, key=key,
                       on_click="ignore", icon=":material/download:", type="primary")
    st.caption(f"Made at {prepared.made_at:%H:%M:%S} UTC.")


def _prepare(store: str, make: Callable[[], bytes], subject: Hashable,
             errors: tuple[type[Exception], ...]) -> None:
    """The prepare button's callback: make the file and keep it, or keep the error's message."""
    try:
        st.session_state[store] = Prepared(subject, make(), datetime.now(timezone.utc))
    except errors as error:
        st.session_state[f"{store}_failure"] = str(error)
