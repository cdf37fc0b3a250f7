"""Conditional sections decided as httpd decides them (server/core.c, mod_version).

`<IfDefine>` against the `-D` names and `Define`s read so far, `<IfFile>`
against ServerRoot, `<IfModule>` against the modules compiled into the binary
and the `LoadModule` lines read so far (core.c find_module), `<IfVersion>`
against the binary's version (mod_version's rules).  `<IfDirective>` and
`<IfSection>` ask the running process what its modules register, so they are
never decidable from outside: the verdict is then None with the reason.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from pathlib import Path

from wsgi_drain.apacheconf.includes import root_relative
from wsgi_drain.apacheconf.model import HttpdFacts
from wsgi_drain.apacheconf.words import BLANKS, Line, next_word
from wsgi_drain.errors import ApacheConfigError

# Source file names (module->name, what `<IfModule x.c>` matches) of httpd
# modules whose .so is not named after it (seen in Debian's apache2 2.4 with
# `strings`); every other `mod_X.so` holds `mod_X.c`.
_SOURCE_NAMES = {
    "mod_mpm_event.so": "event.c",
    "mod_mpm_worker.so": "worker.c",
    "mod_mpm_prefork.so": "prefork.c",
    "mod_ldap.so": "util_ldap.c",
}


class Conditions:
    """What the conditionals are decided against, as it stands at the line being read.

    `defines` changes with `Define`/`UnDefine`, the loaded modules with each
    `LoadModule` (`load_module`); `facts` is the binary's, None when unknown.
    """

    def __init__(self, defines: Iterable[str], facts: HttpdFacts | None) -> None:
        self.defines: set[str] = set(defines)
        self.facts = facts
        # Names `<IfModule>` finds: source names and symbols of what LoadModule loaded.
        self.module_names: set[str] = set()

    def load_module(self, symbol: str, so_path: str) -> None:
        """`LoadModule symbol so_path`: both names now satisfy `<IfModule>`."""
        self.module_names.update({symbol, source_name(so_path)})

    def decide(self, key: str, arg: str, line: Line, server_root: Path) -> tuple[bool | None, str]:
        """A conditional section's verdict: True, False, or None with why it is undecidable.

        `key` is the section's name lower-cased, `server_root` the one in
        effect at `line` (what `<IfFile>` resolves against).
        """
        if key == "ifversion":
            return if_version(arg, self.facts.version() if self.facts else None, line)
        negated = arg.startswith("!")
        word, _ = next_word(arg[1:] if negated else arg, 0)
        if not word:
            raise ApacheConfigError(f"{line.source}: <{key}> needs an argument")
        verdict: bool | None
        why = ""
        if key == "ifdefine":
            verdict = word in self.defines
        elif key == "iffile":
            verdict = root_relative(server_root, word).exists()
        elif key == "ifmodule":
            verdict, why = self._module_loaded(word)
        else:
            # <IfDirective>/<IfSection> ask which directives the loaded
            # modules register: not knowable from outside the process.
            verdict, why = None, "asks which directives the loaded modules provide"
        if verdict is None:
            return None, why
        return verdict != negated, ""

    def _module_loaded(self, name: str) -> tuple[bool | None, str]:
        """core.c find_module: a linked module's source name, or a module symbol."""
        if name in self.module_names:
            return True, ""
        static = self.facts.static_modules() if self.facts else None
        if static is None:
            return None, "needs the list of modules compiled into httpd (`httpd -l`)"
        return name in static or name in static_symbols(static), ""


def source_name(so_path: str) -> str:
    """The source file name (module->name) of the module in `so_path`, as httpd sees it."""
    name = Path(so_path).name
    if name in _SOURCE_NAMES:
        return _SOURCE_NAMES[name]
    return name[: -len(".so")] + ".c" if name.endswith(".so") else name


def static_symbols(static: frozenset[str]) -> frozenset[str]:
    """Module symbols of compiled-in modules: mod_so.c -> so_module, core.c -> core_module."""
    symbols = set()
    for source in static:
        stem = source[: -len(".c")] if source.endswith(".c") else source
        if stem == "http_core":
            symbols.add("http_module")
        else:
            symbols.add(
                stem[len("mod_") :] + "_module" if stem.startswith("mod_") else stem + "_module"
            )
    return frozenset(symbols)


_VERSION_OPS = ("==", ">=", "<=", "=", ">", "<", "~")


def if_version(
    arg: str, version: tuple[int, int, int] | None, line: Line
) -> tuple[bool | None, str]:
    """mod_version's `<IfVersion [[!]op] version>` against the binary's version."""
    text = arg.strip(BLANKS)
    negated = text.startswith("!")
    if negated:
        text = text[1:].lstrip(BLANKS)
    op = "="
    for candidate in _VERSION_OPS:
        if text.startswith(candidate):
            op, text = candidate, text[len(candidate) :].strip(BLANKS)
            break
    if not text:
        raise ApacheConfigError(f"{line.source}: <IfVersion> needs a version")
    if version is None:
        return None, "needs the version of httpd (`httpd -v`)"
    current = ".".join(map(str, version))
    if op == "~" or (text.startswith("/") and text.endswith("/") and len(text) > 1):
        pattern = text[1:-1] if text.startswith("/") else text
        try:
            matched = re.search(pattern, current) is not None
        except re.error as err:
            raise ApacheConfigError(f"{line.source}: <IfVersion> bad regex: {err}") from err
        return matched != negated, ""
    parts = text.split(".")
    if not 1 <= len(parts) <= 3 or not all(p.isdigit() for p in parts):
        raise ApacheConfigError(f"{line.source}: <IfVersion> bad version {text!r}")
    wanted = [int(p) for p in parts]
    # A shorter version compares only the parts it gives: "2.4" = 2.4.71.
    have = list(version[: len(wanted)])
    result = {
        "=": have == wanted,
        "==": have == wanted,
        ">": have > wanted,
        ">=": have >= wanted,
        "<": have < wanted,
        "<=": have <= wanted,
    }[op]
    return result != negated, ""
