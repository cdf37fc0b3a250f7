"""httpd's reading pass (server/config.c ap_process_config_tree), recording what wsgi-drain needs.

`Reader` runs logical lines top to bottom the way httpd executes them while
reading: sections open and close (sections.py), conditionals are decided on
the spot (conditions.py), includes are read where they stand (includes.py),
`Use` expands a macro in place (macros.py), and the directives wsgi-drain
cares about are recorded into a `Server` (server.py).  Every other directive
is passed over.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import replace
from pathlib import Path

from wsgi_drain.apacheconf.conditions import Conditions
from wsgi_drain.apacheconf.includes import Sources, include_targets, root_relative
from wsgi_drain.apacheconf.macros import Macros
from wsgi_drain.apacheconf.model import ApacheConfig, HttpdFacts
from wsgi_drain.apacheconf.sections import (
    CONDITIONAL_SECTIONS,
    PER_DIRECTORY_SECTIONS,
    POSITION_DIRECTIVES,
    RELEVANT_DIRECTIVES,
    collect,
    soak,
)
from wsgi_drain.apacheconf.server import Context, Scope, Server
from wsgi_drain.apacheconf.words import (
    BLANKS,
    Cursor,
    Line,
    args,
    first_word,
    logical_lines,
    next_word,
    on_off,
    words,
)
from wsgi_drain.errors import ApacheConfigError

# ${NAME} as core.c ap_resolve_env finds it: up to the first "}".  httpd 2.4
# has no "${NAME?=default}" form (that is trunk only), so none here either.
_VARIABLE = re.compile(r"\$\{([^}]*)\}")


class Reader:
    """One reading of a configuration: `read_command_line`/`read_main`, then `result`."""

    def __init__(
        self,
        *,
        server_root: Path,
        environ: Mapping[str, str],
        defines: Iterable[str],
        facts: HttpdFacts | None = None,
    ) -> None:
        self.environ = environ
        self.variables: dict[str, str] = {}
        self.conditions = Conditions(defines, facts)
        self.macros = Macros()
        self.sources = Sources()
        self.server = Server(root=Path(os.path.abspath(server_root)))

    # -- files --

    def read_main(self, path: Path) -> None:
        """The main configuration file, whose unreadability is its own error."""
        try:
            text = path.read_text(encoding="utf-8", errors="surrogateescape")
        except OSError as err:
            msg = f"cannot read Apache configuration {path}: {err.strerror}"
            raise ApacheConfigError(msg) from err
        self._read_text(path, text, Context(self.server.main))

    def read_command_line(self, directives: Sequence[str], flag: str) -> None:
        """httpd's `-C` (before the main file) or `-c` (after it) directives.

        httpd reads all of one flag's directives as one text, a line each
        (config.c process_command_config), so a section may span them.
        """
        lines = [
            Line(Path(f"<{flag}>"), number, text.strip(BLANKS))
            for number, text in enumerate(directives, start=1)
        ]
        if lines:
            self._block(Cursor(lines), Context(self.server.main), None, None)

    def result(self, path: Path) -> ApacheConfig:
        """What was read, the main file being `path`."""
        return self.server.config(path, self.sources)

    def _read_included(self, path: Path, ctx: Context, at: Line) -> None:
        self.sources.check_include(path, at)
        try:
            text = path.read_text(encoding="utf-8", errors="surrogateescape")
        except OSError as err:
            msg = f"{at.source}: could not open configuration file {path}: {err.strerror}"
            raise ApacheConfigError(msg) from err
        self._read_text(path, text, ctx)

    def _read_text(self, path: Path, text: str, ctx: Context) -> None:
        with self.sources.reading(path):
            # A section must close in the file that opened it, as in httpd.
            self._block(Cursor(logical_lines(path, text)), ctx, None, None)

    # -- sections --

    def _block(self, lines: Cursor, ctx: Context, section: str | None, opened: Line | None) -> None:
        """Run lines until `</section>` (or the end of the file when `section` is None)."""
        for line in lines:
            if not line.text or line.text.startswith("#"):
                continue
            text = self._resolve(line.text)
            name, pos = next_word(text, 0)
            rest = text[pos:]
            if name.startswith("</"):
                _close(name, section, line)
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

    def _section(
        self, lines: Cursor, ctx: Context, section: str, arg_text: str, line: Line
    ) -> None:
        end = arg_text.rfind(">")
        if end < 0:
            raise ApacheConfigError(f"{line.source}: <{section}> directive missing closing '>'")
        arg = arg_text[:end]
        key = section.lower()
        if key in ("ifdefine", "iffile"):
            verdict, _why = self.conditions.decide(key, arg, line, self.server.root)
            if verdict:
                self._block(lines, ctx, section, line)
            else:
                soak(lines, section, line)
        elif key in CONDITIONAL_SECTIONS:
            self._conditional(lines, ctx, section, arg, line)
        elif key == "virtualhost":
            if ctx.in_vhost:
                raise ApacheConfigError(
                    f"{line.source}: <VirtualHost> cannot occur within <VirtualHost> section"
                )
            self._block(lines, Context(Scope(), in_vhost=True), section, line)
        elif key == "macro":
            # A template: its text only means something where `Use` expands it.
            self.macros.define(lines, section, arg, line)
        elif key in PER_DIRECTORY_SECTIONS:
            self._block(lines, replace(ctx, server_level=False), section, line)
        else:
            self._block(lines, ctx, section, line)

    def _conditional(self, lines: Cursor, ctx: Context, section: str, arg: str, line: Line) -> None:
        """<IfModule>, <IfVersion>, <IfDirective>, <IfSection>: decided only when it matters.

        A body holding nothing the reader records is read the likely way (a
        configuration that starts loads what its positive sections need).
        Otherwise the section is evaluated; one that cannot be is read the
        likely way too, and if its body could move groups, every group from
        here on is marked uncertain.
        """
        body = collect(lines, section, line)
        found = {first_word(b.text) for b in body}
        likely = not arg.lstrip(BLANKS).startswith("!")
        verdict: bool | None = likely
        if found & RELEVANT_DIRECTIVES:
            verdict, why = self.conditions.decide(section.lower(), arg, line, self.server.root)
            if verdict is None:
                if found & POSITION_DIRECTIVES:
                    self.server.mark_uncertain(
                        f"<{section} {arg}> at {line.source} cannot be evaluated: {why}"
                    )
                verdict = likely
        if verdict:
            self._block(Cursor(body), ctx, None, None)

    # -- directives --

    def _directive(self, key: str, rest: str, line: Line, ctx: Context) -> None:
        server = self.server
        if key in ("include", "includeoptional"):
            (name,) = args(rest, line, key, 1, 1)
            target = root_relative(server.root, name)
            optional = key == "includeoptional"
            for path in include_targets(target, optional, line, self.sources.note):
                self._read_included(path, ctx, line)
        elif key == "use":
            with self.macros.use(rest, line) as expanded:
                self._block(Cursor(expanded), ctx, None, None)
        elif key == "undefmacro":
            (name,) = args(rest, line, "UndefMacro", 1, 1)
            self.macros.undefine(name)
        elif key == "loadmodule":
            symbol, so = args(rest, line, "LoadModule", 2, 2)
            self.conditions.load_module(symbol, so)
        elif key == "define":
            found = args(rest, line, "Define", 1, 2)
            _check_variable_name(found[0], line)
            self.conditions.defines.add(found[0])
            if len(found) == 2:
                self.variables[found[0]] = found[1]
        elif key == "undefine":
            (name,) = args(rest, line, "UnDefine", 1, 1)
            _check_variable_name(name, line)
            self.conditions.defines.discard(name)
            self.variables.pop(name, None)
        elif not ctx.server_level:
            return
        elif key == "wsgidaemonprocess":
            # RAW_ARGS directives get their arguments expanded a second time
            # (config.c invoke_cmd).
            inputs = tuple(self.sources.inputs)
            server.add_group(self._resolve(rest), line, ctx.scope, inputs)
        elif key == "errorlog":
            ctx.scope.error_log = args(rest, line, "ErrorLog", 1, 2)
        elif key == "loglevel":
            for word in args(rest, line, "LogLevel", 1, None):
                if ":" not in word:
                    # A plain level resets every per-module level (core.c).
                    ctx.scope.log_words.clear()
                ctx.scope.log_words.append(word)
        elif key == "wsgiscriptreloading":
            ctx.scope.script_reloading = on_off(rest, line, "WSGIScriptReloading")
        elif key in ("wsgiscriptalias", "wsgiscriptaliasmatch", "wsgiimportscript"):
            self._preload(key, self._resolve(rest))
        elif ctx.in_vhost:
            # The rest are main-server only; httpd refuses them in a vhost.
            return
        elif key == "serverroot":
            (root,) = args(rest, line, "ServerRoot", 1, 1)
            # apr_filepath_merge against no root: relative to httpd's cwd.
            server.root = Path(os.path.abspath(root))
        elif key == "defaultruntimedir":
            (directory,) = args(rest, line, "DefaultRuntimeDir", 1, 1)
            # Resolved while reading, against the ServerRoot of that moment.
            server.runtime_dir = root_relative(server.root, directory)
        elif key == "pidfile":
            (server.pid_file,) = args(rest, line, "PidFile", 1, 1)
        elif key == "user":
            (server.user,) = args(rest, line, "User", 1, 1)
        elif key == "wsgisocketprefix":
            (server.socket_prefix,) = args(rest, line, "WSGISocketPrefix", 1, 1)
        elif key == "wsgisocketrotation":
            server.socket_rotation = on_off(rest, line, "WSGISocketRotation")
        elif key == "listen":
            server.listen.append(" ".join(args(rest, line, "Listen", 1, None)))

    def _preload(self, key: str, rest: str) -> None:
        """Note the group a script is loaded into as its daemons start.

        mod_wsgi preloads a WSGIScriptAlias(Match) target only when both
        process-group= and application-group= are given on it (the group and
        interpreter are then known without a request); WSGIImportScript
        always preloads (it requires both).  Otherwise the script is loaded
        by each process on its first request.
        """
        options = dict(w.split("=", 1) for w in words(rest) if "=" in w)
        # mod_wsgi reads an option's value after '=' as a word of its own, so
        # one pair of quotes around it goes; mod_wsgi-express writes
        # process-group='HOST:PORT' on its WSGIImportScript.
        options = {k: _unquote_value(v) for k, v in options.items()}
        group = options.get("process-group")
        if group and "application-group" in options:
            self.server.preloaded.add(group)

    def _resolve(self, text: str) -> str:
        """core.c ap_resolve_env: ${NAME} from Define'd variables, then the environment."""

        def value(match: re.Match[str]) -> str:
            name = match[1]
            found = self.variables.get(name)
            if found is None:
                found = self.environ.get(name)
            return match[0] if found is None else found

        return _VARIABLE.sub(value, text) if "${" in text else text


def _close(word: str, section: str | None, line: Line) -> None:
    """`</word>` at `line` must close the open `section` (None: none is open)."""
    if not word.endswith(">"):
        raise ApacheConfigError(f"{line.source}: {word}> directive missing closing '>'")
    name = word[2:-1]
    if section is None:
        raise ApacheConfigError(f"{line.source}: {word} without matching <{name}> section")
    if name.lower() != section.lower():
        raise ApacheConfigError(f"{line.source}: expected </{section}> but saw {word}")


def _check_variable_name(name: str, line: Line) -> None:
    if ":" in name:
        raise ApacheConfigError(f"{line.source}: Variable name must not contain ':' ({name!r})")


def _unquote_value(value: str) -> str:
    """A key=value option's value without one pair of enclosing ' or " quotes."""
    if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
        return value[1:-1]
    return value
