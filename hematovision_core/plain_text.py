"""User text (nicknames, file names) inside Streamlit Markdown, shown exactly as typed.

Streamlit renders captions, messages and `st.markdown` as GitHub Markdown plus its own extras:
`:red[...]` colour directives, `:material/icon:` and `:smile:` shortcodes, `$...$` LaTeX, links
and bare URLs, and HTML entities. Backslash escapes are not enough: the frontend rewrites every
`:material/` in the raw source before parsing (so `\\:material/...` still changes) and turns emoji
shortcodes into pictures after parsing (escaped colons included), and it loads its LaTeX and emoji
plugins whenever the raw source merely contains a `$` or a `:word:`.

So every ASCII punctuation character is written as a numeric character reference (`&#42;` for `*`):
CommonMark turns a reference into that literal character and never into syntax, and the raw source
then holds no `:`, `$`, `<`, `[` or `*` for any plugin to find. Line breaks and other control
characters become spaces (a newline could start a heading or a list), and bidirectional-override
characters, which can make a name read backwards, are removed; leading spaces are written as
references too, so they cannot indent the text into a code block.
"""

from __future__ import annotations

import string
import unicodedata

_REFERENCES = {ord(c): f"&#{ord(c)};" for c in string.punctuation}
_BIDI_CONTROLS = {ord(c): None for c in "\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069"}


def markdown_literal(text: str) -> str:
    """`text` as Markdown source that Streamlit shows literally, on one line."""
    one_line = "".join(" " if unicodedata.category(c) == "Cc" else c for c in str(text))
    escaped = one_line.translate(_BIDI_CONTROLS).translate(_REFERENCES)
    # Leading spaces would indent the line into a code block; a reference is not indentation.
    stripped = escaped.lstrip(" ")
    return "&#32;" * (len(escaped) - len(stripped)) + stripped
