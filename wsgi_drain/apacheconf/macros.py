"""`<Macro>` and `Use`, as modules/core/mod_macro.c defines and expands them.

A macro's body is kept as written (its `${VAR}`s unresolved, its sections
possibly unbalanced); `Use` substitutes the arguments for the parameter names
and hands the lines back to the reader, which resolves `${VAR}` where the
`Use` stands.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace

from wsgi_drain.apacheconf.sections import collect
from wsgi_drain.apacheconf.words import Cursor, Line, words
from wsgi_drain.errors import ApacheConfigError


@dataclass(frozen=True)
class Macro:
    """A `<Macro>` as defined: its parameters and its body, unexpanded."""

    name: str
    params: tuple[str, ...]
    body: tuple[Line, ...]
    source: str


class Macros:
    """The macros defined so far (by name, case-insensitively) and those being expanded."""

    def __init__(self) -> None:
        self._defined: dict[str, Macro] = {}
        self._expanding: list[str] = []

    def define(self, lines: Cursor, section: str, arg: str, line: Line) -> None:
        """`<Macro name params...>` at `line`: consume its body from `lines` and keep it."""
        found = words(arg)
        if not found or not found[0]:
            raise ApacheConfigError(f"{line.source}: <Macro> needs a macro name")
        body = collect(lines, section, line, raw=True)
        name = found[0]
        self._defined[name.lower()] = Macro(name, tuple(found[1:]), tuple(body), line.source)

    def undefine(self, name: str) -> None:
        """`UndefMacro name`: forgotten; an unknown name is no error."""
        self._defined.pop(name.lower(), None)

    @contextmanager
    def use(self, rest: str, line: Line) -> Iterator[list[Line]]:
        """`Use name args...` at `line`: the expanded body, to be read inside the with-block.

        Raises ApacheConfigError for an unknown macro, the wrong number of
        arguments, or a macro used inside its own expansion.
        """
        found = words(rest)
        if not found or not found[0]:
            raise ApacheConfigError(f"{line.source}: Use needs a macro name")
        macro = self._defined.get(found[0].lower())
        if macro is None:
            raise ApacheConfigError(f"{line.source}: macro {found[0]!r} is not defined")
        values = found[1:]
        if len(values) != len(macro.params):
            raise ApacheConfigError(
                f"{line.source}: macro {macro.name!r} (defined at {macro.source}) used with "
                f"{len(values)} arguments instead of {len(macro.params)}"
            )
        if macro.name.lower() in self._expanding:
            raise ApacheConfigError(
                f"{line.source}: recursive use of macro {macro.name!r} (defined at {macro.source})"
            )
        expanded = [
            replace(body_line, text=substitute(body_line.text, macro.params, values))
            for body_line in macro.body
        ]
        self._expanding.append(macro.name.lower())
        try:
            yield expanded
        finally:
            self._expanding.pop()


def substitute(text: str, params: Sequence[str], values: Sequence[str]) -> str:
    """mod_macro: replace every occurrence of each parameter name by its value.

    Scanning left to right, at each position the longest parameter name that
    starts there wins; substituted text is not scanned again.
    """
    if not params:
        return text
    pairs = [(param, values[index]) for index, param in enumerate(params)]
    ordered = sorted(pairs, key=lambda pv: -len(pv[0]))
    out: list[str] = []
    i = 0
    while i < len(text):
        for param, value in ordered:
            if param and text.startswith(param, i):
                out.append(value)
                i += len(param)
                break
        else:
            out.append(text[i])
            i += 1
    return "".join(out)
