"""plain_text: user text in Streamlit Markdown carries no syntax and reads back as typed."""

from __future__ import annotations

import html
import string

import pytest

from hematovision_core.plain_text import markdown_literal

NASTY = ["**bold** <b>x</b> [link](http://x) :red[alarm] $x^2$", ":material/warning: :smile:",
         "# heading", "- item", "1. item", "`code`", "a_b_c", "&lt;b&gt;", "www.example.com",
         "a@b.co", "~~gone~~", "| a | b |", "> quote", "![img](x.png)", "\\*escaped\\*"]


@pytest.mark.parametrize("text", NASTY)
def test_markdown_syntax_is_written_as_references_and_reads_back_as_typed(text):
    literal = markdown_literal(text)
    assert html.unescape(literal) == text
    # Left in the source: letters, digits, spaces, and the '&#', digits and ';' of references.
    assert not set(literal) & (set(string.punctuation) - set("&#;"))
    assert literal.count("&") == literal.count("&#")


def test_line_breaks_controls_and_bidi_overrides_do_not_survive():
    assert markdown_literal("ana\n# boss\r\n\tx") == "ana &#35; boss   x"
    assert markdown_literal("abc\u202edef") == "abcdef"
    assert markdown_literal("  indented") == "&#32;&#32;indented"  # never a code block
    assert markdown_literal("Ana Lopez") == "Ana Lopez" and markdown_literal("") == ""
