"""Read Streamlit's theme settings once per configuration, not six times in every script run.

Each script run, fragment reruns included (every quiz answer), begins with a `new_session`
message that carries the theme. Streamlit fills it with `config.get_options_for_section` for six
theme sections, and each call walks all of Streamlit's ~200 config options under a lock. py-spy
(`--gil`) on 100 students answering 10 questions put 8.5% of the server's GIL time there, more
than the Quiz's own answer handling. The theme is set by config files, environment variables and
command-line flags before the server listens and never changes while it serves, so `install`
keeps each theme section's answer until the configuration changes: it is dropped whenever
Streamlit sets an option (`_set_option`, which every config source goes through) or re-parses its
files (a new `_config_options` dict).

Only sections named `theme` or `theme.*` are kept; every other lookup goes straight to
Streamlit. This reaches into `streamlit.config` (`get_options_for_section`, `_set_option`,
`_config_options`), so it looks them up defensively and does nothing on a Streamlit without them.
"""

from __future__ import annotations

import logging
import threading

log = logging.getLogger(__name__)


def _is_theme(section: str) -> bool:
    return section == "theme" or section.startswith("theme.")


def install() -> bool:
    """Memoise theme sections in `streamlit.config`. Idempotent; False if not possible."""
    from streamlit import config

    lookup = getattr(config, "get_options_for_section", None)
    set_option = getattr(config, "_set_option", None)
    if not callable(lookup) or not callable(set_option) or not hasattr(config, "_config_options"):
        log.warning("Streamlit's config module has changed: theme settings are not memoised.")
        return False
    if getattr(lookup, "theme_memo", False):
        return True

    lock = threading.Lock()
    memo: dict[str, dict] = {}
    state = {"options": None}  # the `_config_options` dict the memo was read from

    def get_options_for_section(section: str) -> dict:
        if not _is_theme(section):
            return lookup(section)
        with lock:
            if state["options"] is not config._config_options:
                memo.clear()
                state["options"] = config._config_options
            if section not in memo:
                memo[section] = lookup(section)
            return dict(memo[section])  # a copy: callers may change what they are given

    def _set_option(*args, **kwargs):
        try:
            return set_option(*args, **kwargs)
        finally:
            with lock:
                memo.clear()

    get_options_for_section.theme_memo = True
    get_options_for_section.__wrapped__ = lookup
    config.get_options_for_section = get_options_for_section
    config._set_option = _set_option
    return True
