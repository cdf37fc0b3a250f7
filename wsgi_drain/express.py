"""mod_wsgi-express: recognising an instance it set up, what it guarantees, and its words.

mod_wsgi-express writes the whole Apache configuration itself (nobody edits
it: the next `setup-server` overwrites it), so a fix phrased as a directive
is no fix for its users: they change `mod_wsgi-express` options.  Facts this
module relies on, read in mod_wsgi's own source (src/express/server.py,
apache.py, scripts.py; 6.x; docs/express.md has the details):

* it starts Apache through `SERVER_ROOT/apachectl`, which runs httpd with
  `-f SERVER_ROOT/httpd.conf` and `-D` names it chose, always one
  `-DMOD_WSGI_MPM_ENABLE_<MPM>_MODULE`; `--disable-reloading` adds
  `-DMOD_WSGI_DISABLE_RELOADING`, which is what turns `WSGIScriptReloading Off`;
* its one application group is named `HOST:PORT`, or NAME with
  `--process-group NAME`, and its literal display-name is derived from that
  name: `(wsgi:HOST:PORT:UID)` (UID: the uid that ran setup-server) or
  `(wsgi:NAME)`; argv[0] of httpd is padded to that title's length, so the
  whole title survives in every daemon;
* its service scripts (`--service-script`) are groups `service:NAME` with
  `display-name=%{GROUP}`, which the general title proof already covers.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from wsgi_drain.apacheconf import ApacheConfig, DaemonGroup

_MPM_DEFINE = re.compile(r"MOD_WSGI_MPM_ENABLE_[A-Z]+_MODULE")
DISABLE_RELOADING = "MOD_WSGI_DISABLE_RELOADING"


@dataclass(frozen=True)
class Express:
    """An Apache instance that mod_wsgi-express set up and started.

    `server_root` is the directory of its httpd.conf, apachectl and
    handler.wsgi; `defines` the `-D` names on httpd's command line.
    """

    server_root: Path
    defines: frozenset[str]

    @property
    def reloading(self) -> bool:
        """Script reloading stays on unless setup-server/start-server had --disable-reloading."""
        return DISABLE_RELOADING not in self.defines

    @property
    def apachectl(self) -> Path:
        return self.server_root / "apachectl"


def express_title(group: DaemonGroup) -> str | None:
    """The group's title when it has express's form for the group's name, else None."""
    title = group.display_name
    if title is None or title == "%{GROUP}":
        return None
    if title == f"(wsgi:{group.name})":
        return title
    if re.fullmatch(rf"\(wsgi:{re.escape(group.name)}:\d+\)", title):
        return title
    return None


def detect(config: ApacheConfig, argv: Sequence[str]) -> Express | None:
    """The express facts of an instance run with `argv` and `config`, None if not express's.

    All of these must hold, as express's apachectl makes them: httpd was given
    `-f DIR/httpd.conf` (the configuration read), a
    `-DMOD_WSGI_MPM_ENABLE_*_MODULE` define, and DIR holds express's
    `apachectl` and `handler.wsgi`.
    """
    config_file: str | None = None
    defines: set[str] = set()
    words = iter(argv[1:])
    for word in words:
        flag, attached = word[:2], word[2:]
        if flag in ("-f", "-D"):
            value = attached or next(words, "")
            if flag == "-f":
                config_file = value
            else:
                defines.add(value)
    if config_file is None or config.path.name != "httpd.conf":
        return None
    if Path(config_file) != config.path and Path(config_file).resolve() != config.path.resolve():
        return None
    if not any(_MPM_DEFINE.fullmatch(d) for d in defines):
        return None
    root = config.path.parent
    if not ((root / "apachectl").is_file() and (root / "handler.wsgi").is_file()):
        return None
    return Express(server_root=root, defines=frozenset(defines))


def trap_message(key: str, group: DaemonGroup, express: Express, message: str) -> str:
    """A trap's message in express's terms: what it costs, and the express option that fixes it.

    `message` (the general rule's words) is returned for a key express has no
    option for.
    """
    name = repr(group.name)
    by_key = {
        "script-reloading": reloading_message(group, express),
        "log-level": (
            f"mod_wsgi-express runs group {name} at log level {group.wsgi_log_level!r} (its "
            "--log-level, 'warn' by default), which hides mod_wsgi's info lines: wsgi-drain "
            "cannot tell a clean drain from a forced one; give setup-server/start-server "
            "--log-level info"
        ),
        "no-drain-timeout": (
            f"mod_wsgi-express sets no graceful-timeout or eviction-timeout for group {name}: "
            "the drain window is mod_wsgi's default 15 s; give setup-server/start-server "
            "--graceful-timeout SECONDS so it is a decision, not an accident"
        ),
        "shutdown-timeout-zero": (
            f"mod_wsgi-express runs group {name} with --shutdown-timeout 0: a process with a "
            "thread that never exits will never be aborted; give setup-server/start-server "
            "--shutdown-timeout 5"
        ),
        "no-graceful-timer": (
            f"mod_wsgi-express runs group {name} with --graceful-timeout 0 and no "
            "--eviction-timeout: after SIGUSR1 a busy process waits for an idle moment for "
            "ever; give setup-server/start-server --graceful-timeout 15"
        ),
        "no-monitor-thread": (
            f"mod_wsgi-express runs group {name} with --deadlock-timeout 0 and no "
            "--inactivity-timeout: mod_wsgi then runs no monitor thread and the graceful timer "
            "never fires; drop --deadlock-timeout 0 from setup-server/start-server"
        ),
        "lazy-load": (
            f"mod_wsgi-express loads the app of group {name} lazily (an --application-group "
            "with %{...} cannot be preloaded): each new process imports it on its first "
            "request, which waits for the import; give setup-server/start-server an "
            "--application-group without %{...}"
        ),
        "no-identity": (
            f"this user cannot read the sockets of group {name}'s daemons and their title "
            "does not tell them apart: run wsgi-drain as root, or give setup-server/"
            "start-server --process-group NAME"
        ),
    }
    return by_key.get(key, message)


def express_warnings(group: DaemonGroup, express: Express) -> list[str]:
    """What `status` says first about an express group: reloading that undoes a drain."""
    if express.reloading and group.script_reloading:
        return [reloading_message(group, express)]
    return []


def reloading_message(group: DaemonGroup, express: Express) -> str:
    # The fix leads: `check`'s first line keeps only the start of a finding.
    return (
        "script reloading on: add --disable-reloading to setup-server/start-server "
        f"(mod_wsgi-express, group {group.name!r}); running setup-server again rewrites "
        f"{express.server_root / 'handler.wsgi'}, and every daemon then restarts on its next "
        "request through mod_wsgi's shutdown path, undrained (a request in flight gets only "
        "shutdown-timeout), before wsgi-drain is even run"
    )


def identity_fix(group: DaemonGroup, express: Express) -> str:
    """How an express user lets wsgi-drain prove the group after setup-server ran again."""
    named = express_title(group)
    fix = (
        f"mod_wsgi-express wrote this configuration ({express.server_root / 'httpd.conf'}): "
        "the daemons' title is the proof when it is express's own and the same as on disk"
    )
    if named is not None and named != f"(wsgi:{group.name})":
        fix += (
            f"; the default title {named!r} carries the uid that ran setup-server, so run "
            "setup-server again as the user that first ran it, or give setup-server/"
            "start-server --process-group NAME (title (wsgi:NAME)) and then "
            f"{express.apachectl} restart once so Apache runs it"
        )
    else:
        fix += (
            "; give setup-server/start-server the same --process-group NAME as the running "
            f"server, start Apache through {express.apachectl} (it pads argv[0] so the whole "
            f"title fits), or run {express.apachectl} restart once so Apache runs what is on disk"
        )
    return fix


def config_rewritten_warning(group: DaemonGroup, express: Express, title: str) -> str:
    """The identity warning when express's title proved a group whose files were rewritten."""
    return (
        f"mod_wsgi-express's configuration in {express.server_root} was written again after "
        f"Apache loaded it (setup-server run again?): group {group.name!r} was identified by "
        f"its processes' title {title!r}, which express derives from the group, and its "
        "options (--processes, timeouts) are read from the files as they are now. A daemon "
        "restart does not load the configuration: if setup-server's options changed, run "
        f"{express.apachectl} restart once for that"
    )


def group_hint(known: Sequence[str], express: Express) -> str:
    """What an express user needs to know when the group asked for is not defined."""
    return (
        f"mod_wsgi-express ({express.server_root}) names its group HOST:PORT "
        f"({', '.join(known) or 'none here'}) unless setup-server/start-server is given "
        "--process-group NAME: pass that name as --group"
    )


QUIET_ENDINGS = "ended as 'exited'"


def quiet_endings_note(count: int, group: DaemonGroup, express: Express | None) -> str:
    """Why old processes end as 'exited', once per run, with the option that fixes it."""
    if express is not None:
        fix = "give setup-server/start-server --log-level info"
        level = f"mod_wsgi-express's log level {group.wsgi_log_level!r} (--log-level; default warn)"
    else:
        fix = "use LogLevel warn wsgi:info"
        level = f"LogLevel {group.log_level!r}"
    return (
        f"{count} old process(es) {QUIET_ENDINGS}: at {level} mod_wsgi does not log how a "
        "daemon ended, so drained, forced and aborted cannot be told apart; " + fix
    )
