"""Apache httpd configuration text -> frozen dataclasses (pure, no side effects).

`parse_config` reads the main configuration file and everything it includes the
way httpd 2.4 reads it at start-up, and returns what wsgi-drain needs: the
`WSGIDaemonProcess` groups with their options, ids and log settings, and the
server-wide paths (PidFile, DefaultRuntimeDir, WSGISocketPrefix, ErrorLog).

What is followed like httpd does it (server/config.c, server/core.c,
server/util.c of httpd 2.4):

* logical lines: a trailing backslash joins the next physical line (even on a
  comment line, which then swallows the next line); leading and trailing
  blanks are dropped; a line is a comment only when it *starts* with `#`;
* `${VAR}` is replaced in the whole line before it is split into words, from
  `Define`d variables first, then the environment; an undefined variable is
  left as written (httpd only warns);
* words: blanks separate them; `"..."` and `'...'` group them, where `\\"`
  (or `\\'`) and `\\\\` are the only escapes; outside quotes only `\\\\` is one;
* `Include`/`IncludeOptional` relative to ServerRoot, with wildcards per path
  component and directories read recursively, in byte order;
* `Define`, `UnDefine`, `ServerRoot` and `DefaultRuntimeDir` take effect at the
  line where they stand, as httpd executes them while reading;
* conditional sections are decided while reading, and a false one is skipped
  without expanding or including anything inside it: `<IfDefine>`, `<IfFile>`
  (against ServerRoot), `<IfModule>` (against the modules compiled into the
  binary and the `LoadModule` lines read so far, as core.c find_module does)
  and `<IfVersion>` (against the binary's version, mod_version's rules);
* `<Macro>` bodies are kept and expanded where `Use` stands (mod_macro), with
  `${VAR}` resolved at the `Use`;
* `-C` directives (httpd's command line) are read before the main file and
  `-c` directives after it (main.c).

What cannot be decided from the text is never guessed silently.  When a
conditional cannot be evaluated (`<IfDirective>`, `<IfSection>`, or
`<IfModule>`/`<IfVersion>` without the binary's facts) and its body could move
`WSGIDaemonProcess` directives (it defines a group, includes files, uses a
macro, defines variables, loads modules ...), every group from there on gets
`uncertain` set to the reason: its position, and so its socket id, is not
known.  Each group also records `inputs`, the files and directories read up to
its definition, so a caller can tell whether they changed after Apache read
them.

Directives that take effect per directory (inside `<Directory>`, `<Location>`,
`<Files>`, `<If>`, ...) do not change the server-level values.
"""

from __future__ import annotations

import fnmatch
import os
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import MappingProxyType
from typing import Protocol

from wsgi_drain.errors import ApacheConfigError, GroupNotFoundError

# mod_wsgi's defaults (wsgi_daemon.c, 4.9 and 6.x alike).
DEFAULT_PROCESSES = 1
DEFAULT_THREADS = 15
DEFAULT_GRACEFUL_TIMEOUT = 15.0
DEFAULT_SHUTDOWN_TIMEOUT = 5.0
DEFAULT_LOG_LEVEL = "warn"

# httpd's DEFAULT_ERRORLOG, relative to ServerRoot (the same in upstream and
# Debian builds: `apache2 -V`).
_DEFAULT_ERRORLOG = "logs/error_log"

# The names `LogLevel` accepts for mod_wsgi: its source file name and its
# module symbol, with or without `_module` (core.c update_loglevel).  httpd
# itself rejects "mod_wsgi"; it is accepted here because people write it.
_WSGI_MODULE_NAMES = frozenset({"wsgi", "wsgi_module", "mod_wsgi.c", "mod_wsgi"})

# httpd's include recursion limit (AP_MAX_INCLUDE_DEPTH).
_MAX_INCLUDE_DEPTH = 128

# C isspace(), which is what httpd splits words on (Python's str.isspace would
# also split on Unicode blanks).
_BLANKS = " \t\n\v\f\r"

# ${NAME} as core.c ap_resolve_env finds it: up to the first "}".  httpd 2.4
# has no "${NAME?=default}" form (that is trunk only), so none here either.
_VARIABLE = re.compile(r"\$\{([^}]*)\}")

# Sections whose directives apply per directory or per request: server-level
# directives inside them are not server settings.
_PER_DIRECTORY_SECTIONS = frozenset(
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

# Conditional sections, decided while reading (_Reader._decide).
_CONDITIONAL_SECTIONS = frozenset(
    {"ifdefine", "ifmodule", "ifdirective", "ifsection", "iffile", "ifversion"}
)

# Directives whose presence in a section that cannot be evaluated makes the
# positions of the groups after it unknown: they define groups, read more
# text, or change what later conditions and `${VAR}`s decide.  The socket
# prefix is here too: it decides which socket names are the groups'.
_POSITION_DIRECTIVES = frozenset(
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
_RELEVANT_DIRECTIVES = _POSITION_DIRECTIVES | {
    "pidfile",
    "errorlog",
    "loglevel",
    "defaultruntimedir",
    "wsgiscriptreloading",
    "wsgisocketrotation",
    "user",
}

# Source file names (module->name, what `<IfModule x.c>` matches) of httpd
# modules whose .so is not named after it (seen in Debian's apache2 2.4 with
# `strings`); every other `mod_X.so` holds `mod_X.c`.
_SOURCE_NAMES = {
    "mod_mpm_event.so": "event.c",
    "mod_mpm_worker.so": "worker.c",
    "mod_mpm_prefork.so": "prefork.c",
    "mod_ldap.so": "util_ldap.c",
}


class HttpdFacts(Protocol):
    """What only the httpd binary itself knows (`httpd -l`, `httpd -v`).

    Either may answer None when it cannot be learned; the reader then treats
    the conditions that need it as undecidable.
    """

    def static_modules(self) -> frozenset[str] | None:
        """Source names of the compiled-in modules, e.g. {"core.c", "mod_so.c"}."""
        ...

    def version(self) -> tuple[int, int, int] | None:
        """(major, minor, patch) of the binary, e.g. (2, 4, 71)."""
        ...


@dataclass(frozen=True)
class DaemonGroup:
    """One `WSGIDaemonProcess` directive, with the log settings in effect where it stands.

    `id` is the group's 1-based ordinal among all WSGIDaemonProcess directives
    in the order httpd reads them; mod_wsgi names the group's listening socket
    `<WSGISocketPrefix>.<parent-pid>.<generation>.<id>.sock` with it.
    `options` holds every `key=value` option as written, values unquoted; a
    bare word (which mod_wsgi itself refuses) maps to "".  Timeouts are None
    unless given explicitly.  `error_log` is None when the log goes to a pipe
    or syslog.  `script_reloading` is WSGIScriptReloading of the group's
    <VirtualHost>, else of the main server.  `inputs` are the files and
    directories read before this directive (their contents and listings decide
    its position); `uncertain` is why its position cannot be known from the
    text (see the module docstring), None when it can.  `preloaded` is whether
    a script is loaded as each process starts (see `_Reader._preload`).
    """

    name: str
    id: int
    options: Mapping[str, str] = field(hash=False)
    processes: int
    threads: int
    display_name: str | None
    graceful_timeout: float | None
    eviction_timeout: float | None
    shutdown_timeout: float | None
    error_log: Path | None
    log_level: str
    source: str
    script_reloading: bool = True
    # A script is loaded into the group as each daemon starts; False: each
    # process loads it on its first request (mod_wsgi's default).
    preloaded: bool = False
    inputs: tuple[Path, ...] = field(default=(), hash=False, compare=False, repr=False)
    uncertain: str | None = None

    @property
    def title(self) -> str | None:
        """The process title display-name gives: "%{GROUP}" -> "(wsgi:NAME)", else as written."""
        if self.display_name is None:
            return None
        if self.display_name == "%{GROUP}":
            return f"(wsgi:{self.name})"
        return self.display_name

    @property
    def drain_window(self) -> float:
        """Seconds a SIGUSR1'd process may keep serving before forced shutdown.

        mod_wsgi uses eviction-timeout for a signalled restart when it is set
        (non-zero), else graceful-timeout, whose default is 15 s.
        """
        if self.eviction_timeout is not None and self.eviction_timeout > 0:
            return self.eviction_timeout
        if self.graceful_timeout is not None:
            return self.graceful_timeout
        return DEFAULT_GRACEFUL_TIMEOUT

    @property
    def shutdown_window(self) -> float:
        """Seconds of forced shutdown before the process aborts (default 5 s)."""
        if self.shutdown_timeout is not None:
            return self.shutdown_timeout
        return DEFAULT_SHUTDOWN_TIMEOUT

    @property
    def wsgi_log_level(self) -> str:
        """The level mod_wsgi logs at here: its own `wsgi:LEVEL` if given, else the global one."""
        return effective_module_level(self.log_level, _WSGI_MODULE_NAMES)


@dataclass(frozen=True)
class ApacheConfig:
    """The parts of one Apache configuration wsgi-drain relies on.

    Paths are resolved as httpd resolves them; `socket_prefix` is None when
    WSGISocketPrefix is not set (mod_wsgi then uses a build-time default under
    ServerRoot), `pid_file` None when PidFile is not set (httpd then uses its
    build-time DEFAULT_PIDLOG, `/run/apache2.pid` on Debian).  `error_log` is
    the main server's (ServerRoot/logs/error_log when unset), None when piped
    or syslog.  `listen` holds each Listen directive's arguments as written,
    joined by one space.  `files` lists every file read, each once, in the order
    first read; `inputs` every file and directory whose contents or listing the
    reading depended on (includes that matched nothing included).  `uncertain`
    is the first reason a group's position could not be decided, None if none.
    `user` is the User directive (None when unset).
    """

    path: Path
    server_root: Path
    groups: tuple[DaemonGroup, ...]
    socket_prefix: Path | None
    socket_rotation: bool
    pid_file: Path | None
    runtime_dir: Path | None
    error_log: Path | None
    log_level: str
    script_reloading: bool
    listen: tuple[str, ...]
    files: tuple[Path, ...]
    inputs: tuple[Path, ...] = ()
    uncertain: str | None = None
    user: str | None = None

    def group(self, name: str) -> DaemonGroup:
        """The group named exactly `name` (mod_wsgi compares names case-sensitively).

        Raises GroupNotFoundError carrying the names that are defined.
        """
        for group in self.groups:
            if group.name == name:
                return group
        raise GroupNotFoundError(name, tuple(g.name for g in self.groups), str(self.path))


def effective_module_level(log_level: str, module_names: Iterable[str]) -> str:
    """The level a module logs at under `LogLevel` text such as "warn wsgi:info".

    Words apply left to right like httpd's: a plain level sets the global level
    and clears every per-module level; `module:level` sets one module's.
    Returns the level lower-cased; "warn" when nothing applies.
    """
    names = frozenset(module_names)
    level = DEFAULT_LOG_LEVEL
    module_level: str | None = None
    for word in log_level.split():
        module, sep, value = word.rpartition(":")
        if not sep:
            level, module_level = word.lower(), None
        elif module in names:
            module_level = value.lower()
    return module_level or level


def parse_config(
    path: Path,
    *,
    server_root: Path | None = None,
    environ: Mapping[str, str] | None = None,
    defines: Iterable[str] = (),
    before: Sequence[str] = (),
    after: Sequence[str] = (),
    facts: HttpdFacts | None = None,
) -> ApacheConfig:
    """Read the Apache configuration rooted at `path`, following its includes.

    `server_root` is the running httpd's `-d`; a ServerRoot directive replaces
    it from where it stands; without either, the directory of `path`.
    `environ` is what `${VAR}` falls back to after Define'd variables (httpd
    uses its own process environment); default os.environ.  `defines` are the
    `-D` names of httpd's command line, for `<IfDefine>`; `before` and `after`
    its `-C` and `-c` directives.  `facts` tells the compiled-in modules and
    the version, for `<IfModule>` and `<IfVersion>`; without it those are
    undecidable (see the module docstring).

    Raises ApacheConfigError, naming file and line, when a file cannot be read,
    a non-optional Include matches nothing, includes recurse, sections do not
    match up, or a WSGIDaemonProcess is invalid or duplicates a group name.
    """
    reader = _Reader(
        server_root=server_root if server_root is not None else path.parent,
        environ=os.environ if environ is None else environ,
        defines=defines,
        facts=facts,
    )
    reader.read_command_line(before, "-C")
    reader.read_main(path)
    reader.read_command_line(after, "-c")
    return reader.result(path)


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


# --- reading -------------------------------------------------------------------


@dataclass(frozen=True)
class _Line:
    """One logical line: trimmed text, starting at `number` of `path`."""

    path: Path
    number: int
    text: str

    @property
    def source(self) -> str:
        return f"{self.path}:{self.number}"


class _Cursor:
    """The logical lines of one file, consumed by nested sections in turn."""

    def __init__(self, lines: list[_Line]) -> None:
        self._lines = lines
        self._next = 0

    def __iter__(self) -> Iterator[_Line]:
        return self

    def __next__(self) -> _Line:
        if self._next >= len(self._lines):
            raise StopIteration
        line = self._lines[self._next]
        self._next += 1
        return line


@dataclass
class _Scope:
    """Log settings of the main server or of one <VirtualHost>."""

    error_log: list[str] | None = None
    log_words: list[str] = field(default_factory=list)
    script_reloading: bool | None = None


@dataclass(frozen=True)
class _Context:
    """Where a directive stands: which server, and whether at server level."""

    scope: _Scope
    in_vhost: bool = False
    server_level: bool = True


@dataclass
class _PendingGroup:
    """A group as read; its log settings are known only once its scope is complete."""

    name: str
    options: dict[str, str]
    source: str
    scope: _Scope
    inputs: tuple[Path, ...] = ()
    uncertain: str | None = None


@dataclass(frozen=True)
class _Macro:
    """A `<Macro>` as defined: its parameters and its body, unexpanded."""

    name: str
    params: tuple[str, ...]
    body: tuple[_Line, ...]
    source: str


def _logical_lines(path: Path, text: str) -> list[_Line]:
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
        lines.append(_Line(path, start, "".join(pending).strip(_BLANKS)))
        pending = []
    if pending:
        lines.append(_Line(path, start, "".join(pending).strip(_BLANKS)))
    return lines


def _next_word(text: str, pos: int) -> tuple[str, int]:
    """One word from `pos` per util.c ap_getword_conf, and where the next one starts."""
    n = len(text)
    while pos < n and text[pos] in _BLANKS:
        pos += 1
    if pos >= n:
        return "", n
    quote = text[pos]
    if quote in "\"'":
        end = pos + 1
        while end < n and text[end] != quote:
            end += 2 if text[end] == "\\" and text[end + 1 : end + 2] in (quote, "\\") else 1
        word = _unescape(text[pos + 1 : end], quote)
        # An unterminated quote runs to the end of the line, no error.
        end = min(end + 1, n)
    else:
        end = pos
        while end < n and text[end] not in _BLANKS:
            end += 1
        word = _unescape(text[pos:end], "")
    while end < n and text[end] in _BLANKS:
        end += 1
    return word, end


def _unescape(raw: str, quote: str) -> str:
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


def _words(text: str) -> list[str]:
    """All words of `text`; a quoted empty string is a word too."""
    words = []
    pos = 0
    while pos < len(text):
        word, pos = _next_word(text, pos)
        words.append(word)
    return words


def _atoi(text: str) -> int:
    """C atoi(): the leading integer, 0 when there is none (mod_wsgi reads numbers so)."""
    match = re.match(r"[ \t\n\v\f\r]*([+-]?\d+)", text)
    return int(match[1]) if match else 0


class _Reader:
    """httpd's reading pass, recording only what wsgi-drain needs."""

    def __init__(
        self,
        *,
        server_root: Path,
        environ: Mapping[str, str],
        defines: Iterable[str],
        facts: HttpdFacts | None = None,
    ) -> None:
        self.server_root = Path(os.path.abspath(server_root))
        self.environ = environ
        self.defines: set[str] = set(defines)
        self.variables: dict[str, str] = {}
        self.facts = facts
        # Names `<IfModule>` finds: source names and symbols of what LoadModule loaded.
        self.module_names: set[str] = set()
        self.macros: dict[str, _Macro] = {}
        self.expanding: list[str] = []
        self.uncertain: str | None = None
        self.main = _Scope()
        self.groups: list[_PendingGroup] = []
        self.group_sources: dict[str, str] = {}
        self.files: list[Path] = []
        self.inputs: list[Path] = []
        self.include_stack: list[str] = []
        self.user: str | None = None
        self.runtime_dir: Path | None = None
        self.pid_file: str | None = None
        self.socket_prefix: str | None = None
        self.socket_rotation = True
        self.listen: list[str] = []
        # Groups a script is preloaded into (WSGIImportScript, or WSGIScriptAlias
        # with process-group= and application-group=).
        self.preloaded: set[str] = set()

    # -- files --

    def read_main(self, path: Path) -> None:
        try:
            text = path.read_text(encoding="utf-8", errors="surrogateescape")
        except OSError as err:
            msg = f"cannot read Apache configuration {path}: {err.strerror}"
            raise ApacheConfigError(msg) from err
        self._read_text(path, text, _Context(self.main))

    def read_command_line(self, directives: Sequence[str], flag: str) -> None:
        """httpd's `-C` (before the main file) or `-c` (after it) directives.

        httpd reads all of one flag's directives as one text, a line each
        (config.c process_command_config), so a section may span them.
        """
        lines = [
            _Line(Path(f"<{flag}>"), number, text.strip(_BLANKS))
            for number, text in enumerate(directives, start=1)
        ]
        if lines:
            self._block(_Cursor(lines), _Context(self.main), None, None)

    def _input(self, path: Path) -> None:
        if path not in self.inputs:
            self.inputs.append(path)

    def _read_included(self, path: Path, ctx: _Context, at: _Line) -> None:
        real = os.path.realpath(path)
        if real in self.include_stack:
            chain = " -> ".join([*self.include_stack[self.include_stack.index(real) :], real])
            raise ApacheConfigError(f"{at.source}: Include loop: {chain}")
        if len(self.include_stack) > _MAX_INCLUDE_DEPTH:
            msg = f"{at.source}: exceeded the maximum include depth of {_MAX_INCLUDE_DEPTH}"
            raise ApacheConfigError(msg)
        try:
            text = path.read_text(encoding="utf-8", errors="surrogateescape")
        except OSError as err:
            msg = f"{at.source}: could not open configuration file {path}: {err.strerror}"
            raise ApacheConfigError(msg) from err
        self._read_text(path, text, ctx)

    def _read_text(self, path: Path, text: str, ctx: _Context) -> None:
        if path not in self.files:
            self.files.append(path)
        self._input(path)
        self.include_stack.append(os.path.realpath(path))
        # A section must close in the file that opened it, as in httpd.
        self._block(_Cursor(_logical_lines(path, text)), ctx, None, None)
        self.include_stack.pop()

    def _root_relative(self, name: str) -> Path:
        """config.c ap_server_root_relative: absolute as is, else under the current ServerRoot."""
        return Path(os.path.normpath(self.server_root / name))

    # -- sections --

    def _block(
        self, lines: _Cursor, ctx: _Context, section: str | None, opened: _Line | None
    ) -> None:
        """Run lines until `</section>` (or the end of the file when `section` is None)."""
        for line in lines:
            if not line.text or line.text.startswith("#"):
                continue
            text = self._resolve(line.text)
            name, pos = _next_word(text, 0)
            rest = text[pos:]
            if name.startswith("</"):
                self._close(name, section, line)
                return
            if name.startswith("<"):
                # "<VirtualHost *:80>" -> "<VirtualHost" + "*:80>"; "<Foo>" -> "<Foo" + ">".
                if name.endswith(">"):
                    name = name[:-1]
                self._section(lines, ctx, name[1:], rest or ">", line)
                continue
            self._directive(name.lower(), rest, line, ctx)
        if section is not None and opened is not None:
            raise ApacheConfigError(
                f"{opened.source}: <{section}> is not closed: expected </{section}> "
                "before the end of the file"
            )

    def _close(self, word: str, section: str | None, line: _Line) -> None:
        if not word.endswith(">"):
            raise ApacheConfigError(f"{line.source}: {word}> directive missing closing '>'")
        name = word[2:-1]
        if section is None:
            raise ApacheConfigError(f"{line.source}: {word} without matching <{name}> section")
        if name.lower() != section.lower():
            raise ApacheConfigError(f"{line.source}: expected </{section}> but saw {word}")

    def _section(self, lines: _Cursor, ctx: _Context, section: str, args: str, line: _Line) -> None:
        end = args.rfind(">")
        if end < 0:
            raise ApacheConfigError(f"{line.source}: <{section}> directive missing closing '>'")
        arg = args[:end]
        key = section.lower()
        if key in ("ifdefine", "iffile"):
            verdict, _why = self._decide(key, arg, line)
            if verdict:
                self._block(lines, ctx, section, line)
            else:
                _soak(lines, section, line)
        elif key in _CONDITIONAL_SECTIONS:
            self._conditional(lines, ctx, section, arg, line)
        elif key == "virtualhost":
            if ctx.in_vhost:
                raise ApacheConfigError(
                    f"{line.source}: <VirtualHost> cannot occur within <VirtualHost> section"
                )
            self._block(lines, _Context(_Scope(), in_vhost=True), section, line)
        elif key == "macro":
            # A template: its text only means something where `Use` expands it.
            self._define_macro(lines, section, arg, line)
        elif key in _PER_DIRECTORY_SECTIONS:
            self._block(lines, replace(ctx, server_level=False), section, line)
        else:
            self._block(lines, ctx, section, line)

    def _decide(self, key: str, arg: str, line: _Line) -> tuple[bool | None, str]:
        """A conditional section's verdict: True, False, or None with why it is undecidable."""
        if key == "ifversion":
            return _if_version(arg, self.facts.version() if self.facts else None, line)
        negated = arg.startswith("!")
        word, _ = _next_word(arg[1:] if negated else arg, 0)
        if not word:
            raise ApacheConfigError(f"{line.source}: <{key}> needs an argument")
        verdict: bool | None
        why = ""
        if key == "ifdefine":
            verdict = word in self.defines
        elif key == "iffile":
            verdict = self._root_relative(word).exists()
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
        return name in static or name in _static_symbols(static), ""

    def _conditional(
        self, lines: _Cursor, ctx: _Context, section: str, arg: str, line: _Line
    ) -> None:
        """<IfModule>, <IfVersion>, <IfDirective>, <IfSection>: decided only when it matters.

        A body holding nothing the reader records is read the likely way (a
        configuration that starts loads what its positive sections need).
        Otherwise the section is evaluated; one that cannot be is read the
        likely way too, and if its body could move groups, every group from
        here on is marked uncertain.
        """
        body = _collect(lines, section, line)
        words = {_first_word(b.text) for b in body}
        likely = not arg.lstrip(_BLANKS).startswith("!")
        verdict: bool | None = likely
        if words & _RELEVANT_DIRECTIVES:
            verdict, why = self._decide(section.lower(), arg, line)
            if verdict is None:
                if words & _POSITION_DIRECTIVES:
                    self._uncertain(
                        f"<{section} {arg}> at {line.source} cannot be evaluated: {why}"
                    )
                verdict = likely
        if verdict:
            self._block(_Cursor(body), ctx, None, None)

    def _uncertain(self, reason: str) -> None:
        if self.uncertain is None:
            self.uncertain = reason

    # -- macros (modules/core/mod_macro.c) --

    def _define_macro(self, lines: _Cursor, section: str, arg: str, line: _Line) -> None:
        words = _words(arg)
        if not words or not words[0]:
            raise ApacheConfigError(f"{line.source}: <Macro> needs a macro name")
        body = _collect(lines, section, line, raw=True)
        name = words[0]
        self.macros[name.lower()] = _Macro(name, tuple(words[1:]), tuple(body), line.source)

    def _use(self, rest: str, line: _Line, ctx: _Context) -> None:
        words = _words(rest)
        if not words or not words[0]:
            raise ApacheConfigError(f"{line.source}: Use needs a macro name")
        macro = self.macros.get(words[0].lower())
        if macro is None:
            raise ApacheConfigError(f"{line.source}: macro {words[0]!r} is not defined")
        values = words[1:]
        if len(values) != len(macro.params):
            raise ApacheConfigError(
                f"{line.source}: macro {macro.name!r} (defined at {macro.source}) used with "
                f"{len(values)} arguments instead of {len(macro.params)}"
            )
        if macro.name.lower() in self.expanding:
            raise ApacheConfigError(
                f"{line.source}: recursive use of macro {macro.name!r} (defined at {macro.source})"
            )
        expanded = [
            replace(body_line, text=_substitute(body_line.text, macro.params, values))
            for body_line in macro.body
        ]
        self.expanding.append(macro.name.lower())
        try:
            self._block(_Cursor(expanded), ctx, None, None)
        finally:
            self.expanding.pop()

    # -- directives --

    def _directive(self, key: str, rest: str, line: _Line, ctx: _Context) -> None:
        if key in ("include", "includeoptional"):
            (name,) = _args(rest, line, key, 1, 1)
            self._include(name, key == "includeoptional", line, ctx)
        elif key == "use":
            self._use(rest, line, ctx)
        elif key == "undefmacro":
            (name,) = _args(rest, line, "UndefMacro", 1, 1)
            self.macros.pop(name.lower(), None)
        elif key == "loadmodule":
            symbol, so = _args(rest, line, "LoadModule", 2, 2)
            self.module_names.update({symbol, _source_name(so)})
        elif key == "define":
            args = _args(rest, line, "Define", 1, 2)
            _check_variable_name(args[0], line)
            self.defines.add(args[0])
            if len(args) == 2:
                self.variables[args[0]] = args[1]
        elif key == "undefine":
            (name,) = _args(rest, line, "UnDefine", 1, 1)
            _check_variable_name(name, line)
            self.defines.discard(name)
            self.variables.pop(name, None)
        elif not ctx.server_level:
            return
        elif key == "wsgidaemonprocess":
            # RAW_ARGS directives get their arguments expanded a second time
            # (config.c invoke_cmd).
            self._group(self._resolve(rest), line, ctx)
        elif key == "errorlog":
            ctx.scope.error_log = _args(rest, line, "ErrorLog", 1, 2)
        elif key == "loglevel":
            for word in _args(rest, line, "LogLevel", 1, None):
                if ":" not in word:
                    # A plain level resets every per-module level (core.c).
                    ctx.scope.log_words.clear()
                ctx.scope.log_words.append(word)
        elif key == "wsgiscriptreloading":
            ctx.scope.script_reloading = _on_off(rest, line, "WSGIScriptReloading")
        elif key in ("wsgiscriptalias", "wsgiscriptaliasmatch", "wsgiimportscript"):
            self._preload(key, self._resolve(rest))
        elif ctx.in_vhost:
            # The rest are main-server only; httpd refuses them in a vhost.
            return
        elif key == "serverroot":
            (root,) = _args(rest, line, "ServerRoot", 1, 1)
            # apr_filepath_merge against no root: relative to httpd's cwd.
            self.server_root = Path(os.path.abspath(root))
        elif key == "defaultruntimedir":
            (directory,) = _args(rest, line, "DefaultRuntimeDir", 1, 1)
            # Resolved while reading, against the ServerRoot of that moment.
            self.runtime_dir = self._root_relative(directory)
        elif key == "pidfile":
            (self.pid_file,) = _args(rest, line, "PidFile", 1, 1)
        elif key == "user":
            (self.user,) = _args(rest, line, "User", 1, 1)
        elif key == "wsgisocketprefix":
            (self.socket_prefix,) = _args(rest, line, "WSGISocketPrefix", 1, 1)
        elif key == "wsgisocketrotation":
            self.socket_rotation = _on_off(rest, line, "WSGISocketRotation")
        elif key == "listen":
            self.listen.append(" ".join(_args(rest, line, "Listen", 1, None)))

    def _preload(self, key: str, rest: str) -> None:
        """Note the group a script is loaded into as its daemons start.

        mod_wsgi preloads a WSGIScriptAlias(Match) target only when both
        process-group= and application-group= are given on it (the group and
        interpreter are then known without a request); WSGIImportScript
        always preloads (it requires both).  Otherwise the script is loaded
        by each process on its first request.
        """
        options = dict(w.split("=", 1) for w in _words(rest) if "=" in w)
        group = options.get("process-group")
        if group and "application-group" in options:
            self.preloaded.add(group)

    def _include(self, name: str, optional: bool, line: _Line, ctx: _Context) -> None:
        target = self._root_relative(name)
        if not _has_wildcard(str(target)):
            self._include_path(target, optional, line, ctx)
            return
        parts = target.parts
        self._include_glob(Path(parts[0]), list(parts[1:]), optional, line, ctx)

    def _include_path(self, path: Path, optional: bool, at: _Line, ctx: _Context) -> None:
        """util.c ap_dir_nofnmatch: a directory is read whole, recursively, in byte order."""
        if path.is_dir():
            self._input(path)
            try:
                names = os.listdir(path)
            except OSError as err:
                msg = f"{at.source}: could not open directory {path}: {err.strerror}"
                raise ApacheConfigError(msg) from err
            # All entries, dot files too: httpd skips only "." and "..".
            for entry in sorted(str(path / n) for n in names):
                self._include_path(Path(entry), optional, at, ctx)
            return
        if optional and not path.exists():
            self._input(_existing_ancestor(path))
            return
        self._read_included(path, ctx, at)

    def _include_glob(
        self, base: Path, parts: list[str], optional: bool, at: _Line, ctx: _Context
    ) -> None:
        """util.c ap_dir_fnmatch: match one path component at a time, in byte order."""
        part, rest = parts[0], parts[1:]
        if not _has_wildcard(part):
            if rest:
                self._include_glob(base / part, rest, optional, at, ctx)
            else:
                self._include_path(base / part, optional, at, ctx)
            return
        self._input(_existing_ancestor(base))
        try:
            names = os.listdir(base)
        except FileNotFoundError:
            if optional:
                return
            raise ApacheConfigError(
                f"{at.source}: could not open directory {base}: No such file or directory"
            ) from None
        except OSError as err:
            msg = f"{at.source}: could not open directory {base}: {err.strerror}"
            raise ApacheConfigError(msg) from err
        matches = sorted(
            str(base / name)
            for name in names
            # APR_FNM_PERIOD: a leading dot must be matched by a dot.
            if fnmatch.fnmatchcase(name, part)
            and (not name.startswith(".") or part.startswith("."))
            # A wildcard inside the path only matches directories.
            and (not rest or (base / name).is_dir())
        )
        if not matches:
            if optional:
                return
            raise ApacheConfigError(
                f"{at.source}: Include: no matches for the wildcard {part!r} in {str(base)!r}"
            )
        for match in matches:
            if rest:
                self._include_glob(Path(match), rest, optional, at, ctx)
            else:
                self._include_path(Path(match), optional, at, ctx)

    def _group(self, args: str, line: _Line, ctx: _Context) -> None:
        """mod_wsgi wsgi_add_daemon_process: name, then key=value options."""
        name, pos = _next_word(args, 0)
        if not name:
            raise ApacheConfigError(f"{line.source}: Name of WSGI daemon process not supplied")
        options: dict[str, str] = {}
        while pos < len(args):
            end = pos
            while end < len(args) and args[end] != "=" and args[end] not in _BLANKS:
                end += 1
            key = args[pos:end]
            if not key:
                raise ApacheConfigError(
                    f"{line.source}: Invalid option to WSGI daemon process definition"
                )
            if end < len(args) and args[end] == "=":
                options[key], pos = _next_word(args, end + 1)
            else:
                # mod_wsgi refuses a bare word; keep it rather than fail on it.
                options[key] = ""
                pos = end
            while pos < len(args) and args[pos] in _BLANKS:
                pos += 1
        if name in self.group_sources:
            raise ApacheConfigError(
                f"{line.source}: Name duplicates previous WSGI daemon definition: "
                f"{name!r} is already defined at {self.group_sources[name]}"
            )
        _check_group_options(name, options, line)
        self.group_sources[name] = line.source
        self.groups.append(
            _PendingGroup(
                name,
                options,
                line.source,
                ctx.scope,
                inputs=tuple(self.inputs),
                uncertain=self.uncertain,
            )
        )

    def _resolve(self, text: str) -> str:
        """core.c ap_resolve_env: ${NAME} from Define'd variables, then the environment."""

        def value(match: re.Match[str]) -> str:
            name = match[1]
            found = self.variables.get(name)
            if found is None:
                found = self.environ.get(name)
            return match[0] if found is None else found

        return _VARIABLE.sub(value, text) if "${" in text else text

    # -- result --

    def result(self, path: Path) -> ApacheConfig:
        root = self.server_root
        main_error_log = self.main.error_log or [_DEFAULT_ERRORLOG]
        main_reloading = self.main.script_reloading
        groups = []
        for number, pending in enumerate(self.groups, start=1):
            scope = pending.scope
            reloading = scope.script_reloading
            if reloading is None:
                reloading = True if main_reloading is None else main_reloading
            groups.append(
                _daemon_group(
                    pending,
                    number,
                    error_log=_error_log(root, scope.error_log or main_error_log),
                    log_level=_vhost_log_level(self.main, scope),
                    script_reloading=reloading,
                    preloaded=pending.name in self.preloaded,
                )
            )
        return ApacheConfig(
            path=path,
            server_root=root,
            groups=tuple(groups),
            socket_prefix=(
                None
                if self.socket_prefix is None
                else Path(os.path.normpath(root / self.socket_prefix))
            ),
            socket_rotation=self.socket_rotation,
            pid_file=self._pid_file(),
            runtime_dir=self.runtime_dir,
            error_log=_error_log(root, main_error_log),
            log_level=" ".join(self.main.log_words) or DEFAULT_LOG_LEVEL,
            script_reloading=True if main_reloading is None else main_reloading,
            listen=tuple(self.listen),
            files=tuple(self.files),
            inputs=tuple(self.inputs),
            uncertain=self.uncertain,
            user=self.user,
        )

    def _pid_file(self) -> Path | None:
        if self.pid_file is None:
            return None
        # log.c ap_log_pid writes ap_runtime_dir_relative(PidFile) (config.c):
        # absolute as is, else under DefaultRuntimeDir, else under
        # ServerRoot + DEFAULT_REL_RUNTIMEDIR.  That last one is a build-time
        # value: "logs" in upstream's default layout, while Debian's apache2
        # 2.4 writes a relative PidFile straight under ServerRoot (checked by
        # starting it).  This follows Debian.  The final ServerRoot counts, as
        # the pid file is written after the whole configuration is read.
        base = self.runtime_dir if self.runtime_dir is not None else self.server_root
        return Path(os.path.normpath(base / self.pid_file))


# --- helpers of the reader -----------------------------------------------------


def _args(rest: str, line: _Line, name: str, least: int, most: int | None) -> list[str]:
    words = _words(rest)
    if len(words) < least or (most is not None and len(words) > most):
        if most == least:
            wanted = f"{least} argument{'s' if least > 1 else ''}"
        elif most is None:
            wanted = f"at least {least} argument{'s' if least > 1 else ''}"
        else:
            wanted = f"{least} to {most} arguments"
        raise ApacheConfigError(f"{line.source}: {name} takes {wanted}, got {len(words)}")
    return words


def _on_off(rest: str, line: _Line, name: str) -> bool:
    (word,) = _args(rest, line, name, 1, 1)
    if word.lower() not in ("on", "off"):
        raise ApacheConfigError(f"{line.source}: {name} must be On or Off, not {word!r}")
    return word.lower() == "on"


def _check_variable_name(name: str, line: _Line) -> None:
    if ":" in name:
        raise ApacheConfigError(f"{line.source}: Variable name must not contain ':' ({name!r})")


def _check_group_options(name: str, options: Mapping[str, str], line: _Line) -> None:
    """The checks mod_wsgi makes on the values wsgi-drain uses, with its messages."""
    checks = {
        "processes": ("process count", 1),
        "threads": ("thread count", 0),
        "graceful-timeout": ("graceful timeout", 0),
        "eviction-timeout": ("eviction timeout", 0),
        "shutdown-timeout": ("shutdown timeout", 0),
    }
    for key, (what, least) in checks.items():
        value = options.get(key)
        if value is not None and (not value or _atoi(value) < least):
            raise ApacheConfigError(
                f"{line.source}: Invalid {what} for WSGI daemon process {name!r}: {value!r}"
            )


def _daemon_group(
    pending: _PendingGroup,
    number: int,
    *,
    error_log: Path | None,
    log_level: str,
    script_reloading: bool,
    preloaded: bool,
) -> DaemonGroup:
    options = pending.options

    def seconds(key: str) -> float | None:
        # mod_wsgi reads whole seconds with atoi(): "2.5" is 2.
        return float(_atoi(options[key])) if key in options else None

    return DaemonGroup(
        name=pending.name,
        id=number,
        options=MappingProxyType(dict(options)),
        processes=_atoi(options["processes"]) if "processes" in options else DEFAULT_PROCESSES,
        threads=_atoi(options["threads"]) if "threads" in options else DEFAULT_THREADS,
        display_name=options.get("display-name"),
        graceful_timeout=seconds("graceful-timeout"),
        eviction_timeout=seconds("eviction-timeout"),
        shutdown_timeout=seconds("shutdown-timeout"),
        error_log=error_log,
        log_level=log_level,
        source=pending.source,
        script_reloading=script_reloading,
        preloaded=preloaded,
        inputs=pending.inputs,
        uncertain=pending.uncertain,
    )


def _error_log(root: Path, args: list[str]) -> Path | None:
    """core.c set_errorlog: "|cmd" and "syslog[:facility]" are not files; "file PATH" is."""
    if len(args) == 2:
        return Path(os.path.normpath(root / args[1])) if args[0] == "file" else None
    target = args[0]
    if target.startswith("|") or target.startswith("syslog"):
        return None
    return Path(os.path.normpath(root / target))


def _vhost_log_level(main: _Scope, vhost: _Scope) -> str:
    """config.c ap_merge_log_config: a vhost's own level wins whole; module levels add up."""
    if main is vhost:
        words = main.log_words
    elif any(":" not in word for word in vhost.log_words):
        words = vhost.log_words
    else:
        words = main.log_words + vhost.log_words
    return " ".join(words) or DEFAULT_LOG_LEVEL


def _soak(lines: _Cursor, section: str, opened: _Line) -> None:
    """Skip a false conditional section, nested sections included (ap_soak_end_container).

    Nothing in it is expanded, included or defined.
    """
    for line in lines:
        word, pos = _next_word(line.text, 0)
        if not word.startswith("<"):
            continue
        if word.startswith("</"):
            if word[2:-1].lower() != section.lower():
                raise ApacheConfigError(f"{line.source}: expected </{section}> but saw {word}")
            return
        name = word[1:]
        if pos >= len(line.text) and name.endswith(">"):
            name = name[:-1]
        _soak(lines, name, line)
    raise ApacheConfigError(
        f"{opened.source}: <{section}> is not closed: expected </{section}> "
        "before the end of the file"
    )


def _collect(lines: _Cursor, section: str, opened: _Line, *, raw: bool = False) -> list[_Line]:
    """The lines of a section up to its matching close, which is consumed, not returned.

    Nested sections are matched by name like _soak does; with `raw` (a
    `<Macro>` body, which may hold unbalanced section text) only nested
    `<Macro>`s are counted.
    """
    body: list[_Line] = []
    depth = [section.lower()]
    for line in lines:
        word, _ = _next_word(line.text, 0)
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


def _first_word(text: str) -> str:
    """The directive or section name of a line, lower-cased, without `<`, `</` or `>`."""
    word, _ = _next_word(text, 0)
    return word.lstrip("</").rstrip(">").lower()


def _substitute(text: str, params: Sequence[str], values: Sequence[str]) -> str:
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


def _source_name(so_path: str) -> str:
    """The source file name (module->name) of the module in `so_path`, as httpd sees it."""
    name = Path(so_path).name
    if name in _SOURCE_NAMES:
        return _SOURCE_NAMES[name]
    return name[: -len(".so")] + ".c" if name.endswith(".so") else name


def _static_symbols(static: frozenset[str]) -> frozenset[str]:
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


def _if_version(
    arg: str, version: tuple[int, int, int] | None, line: _Line
) -> tuple[bool | None, str]:
    """mod_version's `<IfVersion [[!]op] version>` against the binary's version."""
    text = arg.strip(_BLANKS)
    negated = text.startswith("!")
    if negated:
        text = text[1:].lstrip(_BLANKS)
    op = "="
    for candidate in _VERSION_OPS:
        if text.startswith(candidate):
            op, text = candidate, text[len(candidate) :].strip(_BLANKS)
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


def _existing_ancestor(path: Path) -> Path:
    """`path` or its nearest existing parent: whose listing a new file would change."""
    for candidate in (path, *path.parents):
        if candidate.exists():
            return candidate
    return path


def _has_wildcard(text: str) -> bool:
    """apr_fnmatch_test, near enough: any of the glob characters."""
    return any(char in text for char in "*?[")


# --- envvars -------------------------------------------------------------------

_ASSIGNMENT = re.compile(r"(?:export[ \t]+)?([A-Za-z_][A-Za-z0-9_]*)=(.*)\Z", re.DOTALL)
_SHELL_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


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
