"""Debian's `envvars` shell script read for its simple assignments, without running it.

apache2ctl sources `/etc/apache2/envvars` before starting httpd, so the
`${APACHE_RUN_USER}`-style variables of Debian's configuration come from
there; `load_envvars` reads the same values the way sh would set them, for
the lines simple enough to read without a shell.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path

from wsgi_drain.errors import ApacheConfigError

_ASSIGNMENT = re.compile(r"(?:export[ \t]+)?([A-Za-z_][A-Za-z0-9_]*)=(.*)\Z", re.DOTALL)
_SHELL_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def load_envvars(path: Path, environ: Mapping[str, str]) -> dict[str, str]:
    """`environ` updated with what Debian's `envvars` shell script sets, without running it.

    Only top-level simple assignments are read: `NAME=value` and
    `export NAME=value`, with `'...'`, `"..."` and backslash quoting and
    `$NAME`/`${NAME}` expanded from what was read so far, then `environ` (unset
    names expand to "", as in sh); `unset NAME` removes a name.  Lines inside
    `if`/`case`/loops, and any line with a command substitution or a `${...}`
    operator, are ignored, so e.g. SUFFIX comes from `environ`.  Raises
    ApacheConfigError when the file cannot be read.
    """
    try:
        text = path.read_text(encoding="utf-8", errors="surrogateescape")
    except OSError as err:
        raise ApacheConfigError(f"cannot read {path}: {err.strerror}") from err
    result = dict(environ)
    depth = 0
    for raw in text.split("\n"):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        first = line.split(None, 1)[0].rstrip(";")
        # Compound commands: assignments inside them are conditional, and
        # reading both branches would apply the wrong one.
        if first in ("if", "case", "while", "until", "for", "{"):
            depth += 1
            continue
        if first in ("fi", "esac", "done", "}"):
            depth = max(0, depth - 1)
            continue
        if depth:
            continue
        if first == "unset":
            for name in line.split()[1:]:
                result.pop(name, None)
            continue
        assignment = _shell_assignment(line, result)
        if assignment is not None:
            result[assignment[0]] = assignment[1]
    return result


def _shell_assignment(line: str, known: Mapping[str, str]) -> tuple[str, str] | None:
    """NAME and its value from a simple `[export] NAME=value` line, else None."""
    match = _ASSIGNMENT.match(line)
    if match is None:
        return None
    value = _shell_word(match[2], known)
    return None if value is None else (match[1], value)


def _shell_word(text: str, known: Mapping[str, str]) -> str | None:
    """One sh word with quoting and $NAME/${NAME}; None when it is anything more complex."""
    out: list[str] = []
    i = 0
    n = len(text)
    while i < n:
        char = text[i]
        if char in " \t;":
            tail = text[i:].lstrip(" \t;")
            # Another command or word after the value: not a simple assignment.
            return "".join(out) if not tail or tail.startswith("#") else None
        if char in "`(" or text.startswith("$(", i):
            return None
        if char == "'":
            end = text.find("'", i + 1)
            if end < 0:
                return None
            out.append(text[i + 1 : end])
            i = end + 1
        elif char == '"':
            i += 1
            while i < n and text[i] != '"':
                if text[i] == "\\" and i + 1 < n and text[i + 1] in '$`"\\':
                    out.append(text[i + 1])
                    i += 2
                elif text[i] == "$":
                    expanded = _shell_expand(text, i, known)
                    if expanded is None:
                        return None
                    out.append(expanded[0])
                    i = expanded[1]
                elif text[i] == "`":
                    return None
                else:
                    out.append(text[i])
                    i += 1
            if i >= n:
                return None
            i += 1
        elif char == "\\":
            out.append(text[i + 1 : i + 2])
            i += 2
        elif char == "$":
            expanded = _shell_expand(text, i, known)
            if expanded is None:
                return None
            out.append(expanded[0])
            i = expanded[1]
        else:
            out.append(char)
            i += 1
    return "".join(out)


def _shell_expand(text: str, i: int, known: Mapping[str, str]) -> tuple[str, int] | None:
    """$NAME or ${NAME} at `i`: (value, index after); a lone "$" is itself; None for ${...ops}."""
    if text.startswith("$(", i):
        return None
    if text.startswith("${", i):
        end = text.find("}", i + 2)
        if end < 0 or not _SHELL_NAME.fullmatch(text[i + 2 : end]):
            return None
        return known.get(text[i + 2 : end], ""), end + 1
    match = _SHELL_NAME.match(text, i + 1)
    if match is None:
        return "$", i + 1
    return known.get(match[0], ""), match.end()
