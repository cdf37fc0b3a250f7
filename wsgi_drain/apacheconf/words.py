"""Words and logical lines, as httpd's server/util.c reads configuration text.

A file becomes logical lines (`logical_lines`, ap_cfg_getline), a line becomes
words (`next_word`, ap_getword_conf), and a directive's words are counted
against what it takes (`args`, config.c's TAKE1/TAKE12/ITERATE checks).
Nothing here knows a directive's meaning.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from wsgi_drain.errors import ApacheConfigError

# C isspace(), which is what httpd splits words on (Python's str.isspace would
# also split on Unicode blanks).
BLANKS = " \t\n\v\f\r"


@dataclass(frozen=True)
class Line:
    """One logical line: trimmed text, starting at `number` of `path`."""

    path: Path
    number: int
    text: str

    @property
    def source(self) -> str:
        return f"{self.path}:{self.number}"


class Cursor:
    """The logical lines of one file, consumed by nested sections in turn."""

    def __init__(self, lines: list[Line]) -> None:
        self._lines = lines
        self._next = 0

    def __iter__(self) -> Iterator[Line]:
        return self

    def __next__(self) -> Line:
        if self._next >= len(self._lines):
            raise StopIteration
        line = self._lines[self._next]
        self._next += 1
        return line


def logical_lines(path: Path, text: str) -> list[Line]:
    """Join backslash continuations and trim, like util.c ap_cfg_getline."""
    if text.startswith("\ufeff"):
        text = text[1:]
    physical = text.split("\n")
    # A final line without a newline cannot be continued (httpd only joins
    # when the backslash stands before a newline).
    ends_with_newline = text.endswith("\n")
    if ends_with_newline:
        physical.pop()
    lines = []
    pending: list[str] = []
    start = 0
    for index, raw in enumerate(physical):
        if not pending:
            start = index + 1
        content = raw[:-1] if raw.endswith("\r") else raw
        has_newline = index < len(physical) - 1 or ends_with_newline
        if has_newline and content.endswith("\\"):
            # The backslash goes, nothing replaces it: "a\" + "  b" is "a  b".
            pending.append(content[:-1])
            continue
        pending.append(content)
        lines.append(Line(path, start, "".join(pending).strip(BLANKS)))
        pending = []
    if pending:
        lines.append(Line(path, start, "".join(pending).strip(BLANKS)))
    return lines


def next_word(text: str, pos: int) -> tuple[str, int]:
    """One word from `pos` per util.c ap_getword_conf, and where the next one starts."""
    n = len(text)
    while pos < n and text[pos] in BLANKS:
        pos += 1
    if pos >= n:
        return "", n
    quote = text[pos]
    if quote in "\"'":
        end = pos + 1
        while end < n and text[end] != quote:
            end += 2 if text[end] == "\\" and text[end + 1 : end + 2] in (quote, "\\") else 1
        word = unescape(text[pos + 1 : end], quote)
        # An unterminated quote runs to the end of the line, no error.
        end = min(end + 1, n)
    else:
        end = pos
        while end < n and text[end] not in BLANKS:
            end += 1
        word = unescape(text[pos:end], "")
    while end < n and text[end] in BLANKS:
        end += 1
    return word, end


def unescape(raw: str, quote: str) -> str:
    """Drop the backslash of `\\\\` and of an escaped quote; keep every other backslash."""
    out = []
    i = 0
    while i < len(raw):
        char = raw[i]
        if char == "\\" and i + 1 < len(raw) and (raw[i + 1] == "\\" or raw[i + 1] == quote):
            char = raw[i + 1]
            i += 1
        out.append(char)
        i += 1
    return "".join(out)


def words(text: str) -> list[str]:
    """All words of `text`; a quoted empty string is a word too."""
    found = []
    pos = 0
    while pos < len(text):
        word, pos = next_word(text, pos)
        found.append(word)
    return found


def atoi(text: str) -> int:
    """C atoi(): the leading integer, 0 when there is none (mod_wsgi reads numbers so)."""
    match = re.match(r"[ \t\n\v\f\r]*([+-]?\d+)", text)
    return int(match[1]) if match else 0


def first_word(text: str) -> str:
    """The directive or section name of a line, lower-cased, without `<`, `</` or `>`."""
    word, _ = next_word(text, 0)
    return word.lstrip("</").rstrip(">").lower()


def args(rest: str, line: Line, name: str, least: int, most: int | None) -> list[str]:
    """The words of directive `name`, which takes `least` to `most` (None: any number)."""
    found = words(rest)
    if len(found) < least or (most is not None and len(found) > most):
        if most == least:
            wanted = f"{least} argument{'s' if least > 1 else ''}"
        elif most is None:
            wanted = f"at least {least} argument{'s' if least > 1 else ''}"
        else:
            wanted = f"{least} to {most} arguments"
        raise ApacheConfigError(f"{line.source}: {name} takes {wanted}, got {len(found)}")
    return found


def on_off(rest: str, line: Line, name: str) -> bool:
    """A flag directive's one argument, On or Off (case-insensitive)."""
    (word,) = args(rest, line, name, 1, 1)
    if word.lower() not in ("on", "off"):
        raise ApacheConfigError(f"{line.source}: {name} must be On or Off, not {word!r}")
    return word.lower() == "on"
