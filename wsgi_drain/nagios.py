"""The size limits of Nagios plugin output, and text cut to fit them.

Nagios shows a plugin's first line as its status (and parses perfdata after
its `|`); NRPE 2 carries at most 1024 bytes of output (1023 and the NUL),
and cuts the rest without a word.  So the first line stays short (under 200
characters, perfdata included) and the whole output under 1024 bytes, the
details on the lines after the first, a line saying what was left out.
Bytes are counted, not characters: the limit is NRPE's buffer.
"""

from __future__ import annotations

from collections.abc import Iterable

FIRST_LINE_MAX = 199
OUTPUT_MAX = 1023
DETAIL_LINE_MAX = 700  # with the first line and the note, under OUTPUT_MAX
ELLIPSIS = "..."


def size(text: str) -> int:
    return len(text.encode("utf-8"))


def shorten(text: str, limit: int) -> str:
    """`text` if it fits in `limit` bytes, else its start and '...' in exactly that budget."""
    if size(text) <= limit:
        return text
    room = max(0, limit - len(ELLIPSIS))
    cut = text.encode("utf-8")[:room].decode("utf-8", errors="ignore")
    return cut.rstrip(" ;,:") + ELLIPSIS


def first_line(head: str, summary: str, suffix: str, perf: str) -> str:
    """`head summary suffix | perf` in FIRST_LINE_MAX bytes: the summary is what gives way."""
    tail = suffix + (f" | {perf}" if perf else "")
    return head + shorten(summary, FIRST_LINE_MAX - size(head) - size(tail)) + tail


def output(first: str, details: Iterable[str]) -> str:
    """The first line and as many detail lines as fit in OUTPUT_MAX bytes, newline-ended."""
    lines = [first]
    used = size(first) + 1
    pending = [shorten(d, DETAIL_LINE_MAX) for d in details]
    for index, line in enumerate(pending):
        left = len(pending) - index - 1
        # Room for this line, and for the note about the rest if any remain.
        note = f"(+{left} more lines: wsgi-drain check --json)" if left else ""
        if used + size(line) + 1 + (size(note) + 1 if note else 0) > OUTPUT_MAX:
            lines.append(f"(+{len(pending) - index} more lines: wsgi-drain check --json)")
            break
        lines.append(line)
        used += size(line) + 1
    return "\n".join(lines) + "\n"
