"""Sections as server/config.c nests them: what kind each is, and skipping or collecting one.

The reader decides what a section means; this module knows which sections
exist (per-directory, conditional), which directives inside an undecidable
conditional matter, and how to find a section's end without running its body
(`soak`, ap_soak_end_container) or while keeping it (`collect`).
"""

from __future__ import annotations

from wsgi_drain.apacheconf.words import Cursor, Line, next_word
from wsgi_drain.errors import ApacheConfigError

# Sections whose directives apply per directory or per request: server-level
# directives inside them are not server settings.
PER_DIRECTORY_SECTIONS = frozenset(
    [
        "directory",
        "directorymatch",
        "location",
        "locationmatch",
        "files",
        "filesmatch",
        "proxy",
        "proxymatch",
        "if",
        "elseif",
        "else",
        "limit",
        "limitexcept",
        "requireall",
        "requireany",
        "requirenone",
        "authnprovideralias",
        "authzprovideralias",
    ]
)

# Conditional sections, decided while reading (conditions.Conditions.decide).
CONDITIONAL_SECTIONS = frozenset(
    {"ifdefine", "ifmodule", "ifdirective", "ifsection", "iffile", "ifversion"}
)

# Directives whose presence in a section that cannot be evaluated makes the
# positions of the groups after it unknown: they define groups, read more
# text, or change what later conditions and `${VAR}`s decide.  The socket
# prefix is here too: it decides which socket names are the groups'.
POSITION_DIRECTIVES = frozenset(
    {
        "wsgidaemonprocess",
        "include",
        "includeoptional",
        "use",
        "macro",
        "undefmacro",
        "define",
        "undefine",
        "loadmodule",
        "serverroot",
        "wsgisocketprefix",
    }
)

# Everything the reader records: a conditional whose body holds none of these
# is read the likely way without asking the binary (`httpd -l`, `httpd -v`),
# since its verdict changes nothing wsgi-drain uses.
RELEVANT_DIRECTIVES = POSITION_DIRECTIVES | {
    "pidfile",
    "errorlog",
    "loglevel",
    "defaultruntimedir",
    "wsgiscriptreloading",
    "wsgisocketrotation",
    "user",
}


def soak(lines: Cursor, section: str, opened: Line) -> None:
    """Skip a false conditional section, nested sections included (ap_soak_end_container).

    Nothing in it is expanded, included or defined.
    """
    for line in lines:
        word, pos = next_word(line.text, 0)
        if not word.startswith("<"):
            continue
        if word.startswith("</"):
            if word[2:-1].lower() != section.lower():
                raise ApacheConfigError(f"{line.source}: expected </{section}> but saw {word}")
            return
        name = word[1:]
        if pos >= len(line.text) and name.endswith(">"):
            name = name[:-1]
        soak(lines, name, line)
    raise ApacheConfigError(
        f"{opened.source}: <{section}> is not closed: expected </{section}> "
        "before the end of the file"
    )


def collect(lines: Cursor, section: str, opened: Line, *, raw: bool = False) -> list[Line]:
    """The lines of a section up to its matching close, which is consumed, not returned.

    Nested sections are matched by name like soak does; with `raw` (a
    `<Macro>` body, which may hold unbalanced section text) only nested
    `<Macro>`s are counted.
    """
    body: list[Line] = []
    depth = [section.lower()]
    for line in lines:
        word, _ = next_word(line.text, 0)
        lowered = word.lower()
        if lowered.startswith("</"):
            name = lowered[2:].rstrip(">")
            if not raw or name == "macro":
                if name != depth[-1]:
                    raise ApacheConfigError(
                        f"{line.source}: expected </{depth[-1]}> but saw {word}"
                    )
                depth.pop()
                if not depth:
                    return body
        elif lowered.startswith("<") and (not raw or lowered.rstrip(">") == "<macro"):
            depth.append(lowered[1:].rstrip(">"))
        body.append(line)
    raise ApacheConfigError(
        f"{opened.source}: <{section}> is not closed: expected </{section}> "
        "before the end of the file"
    )
