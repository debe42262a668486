"""streamlit_theme_memo: the theme Streamlit sends with every run, read once per configuration."""

from __future__ import annotations

import pytest
from streamlit import config
from streamlit.proto.ForwardMsg_pb2 import ForwardMsg
from streamlit.runtime import app_session

import streamlit_theme_memo

THEME_SECTIONS = ["theme", "theme.light", "theme.dark", "theme.sidebar", "theme.light.sidebar",
                  "theme.dark.sidebar"]


@pytest.fixture
def memo(monkeypatch):
    """The memo installed for one test; Streamlit's own functions and options come back after."""
    monkeypatch.setattr(config, "get_options_for_section", config.get_options_for_section)
    monkeypatch.setattr(config, "_set_option", config._set_option)
    lookups = []
    original = config.get_options_for_section

    def counted(section):
        lookups.append(section)
        return original(section)

    monkeypatch.setattr(config, "get_options_for_section", counted)
    saved = config.get_option("theme.primaryColor")
    assert streamlit_theme_memo.install()
    yield lookups
    config.set_option("theme.primaryColor", saved)


def new_session_theme() -> ForwardMsg:
    """The theme part of a run's `new_session` message, filled as Streamlit fills it."""
    message = ForwardMsg()
    theme = message.new_session.custom_theme
    app_session._populate_theme_msg(theme)
    for section, part in [("theme.light", theme.light), ("theme.dark", theme.dark),
                          ("theme.sidebar", theme.sidebar),
                          ("theme.light.sidebar", theme.light.sidebar),
                          ("theme.dark.sidebar", theme.dark.sidebar)]:
        app_session._populate_theme_msg(part, section)
    return message


def test_the_message_is_the_same_and_each_section_is_read_once(memo):
    config.set_option("theme.primaryColor", "#8e244d")
    memo.clear()
    first, second = new_session_theme(), new_session_theme()
    assert first == second
    assert first.new_session.custom_theme.primary_color == "#8e244d"
    assert sorted(memo) == sorted(THEME_SECTIONS)  # the second message read none again


def test_kept_sections_equal_streamlits_own(memo):
    kept = {section: config.get_options_for_section(section) for section in THEME_SECTIONS}
    assert kept == {section: config.get_options_for_section.__wrapped__(section)
                    for section in THEME_SECTIONS}


def test_setting_an_option_is_seen_at_once(memo):
    config.set_option("theme.primaryColor", "#111111")
    assert new_session_theme().new_session.custom_theme.primary_color == "#111111"
    config.set_option("theme.primaryColor", "#222222")
    assert new_session_theme().new_session.custom_theme.primary_color == "#222222"


def test_other_sections_are_never_kept(memo):
    config.get_options_for_section("server")
    config.get_options_for_section("server")
    assert memo.count("server") == 2


def test_a_caller_changing_its_answer_does_not_change_the_next(memo):
    config.get_options_for_section("theme")["primaryColor"] = "#badbad"
    assert config.get_options_for_section("theme")["primaryColor"] != "#badbad"


def test_install_twice_wraps_once(memo):
    wrapped = config.get_options_for_section
    assert streamlit_theme_memo.install()
    assert config.get_options_for_section is wrapped
