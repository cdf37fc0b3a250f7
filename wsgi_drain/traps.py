"""Configuration traps that make a restart slow, blind or unsafe, each with its fix.

Shared by `restart` (pre-flight warnings) and `check` (WARNING lines).  An
operator who chose one on purpose acknowledges it by its key (`--ack-trap
KEY`, TOML `ack_traps = [...]`): it is then a note, not a warning, and every
other rule still applies.
"""

from __future__ import annotations

from dataclasses import dataclass

from wsgi_drain import express as express_mod
from wsgi_drain.apacheconf import DaemonGroup
from wsgi_drain.express import Express

_QUIET_LEVELS = {"emerg", "alert", "crit", "error", "warn", "notice"}
KEYS = (
    "no-drain-timeout",
    "shutdown-timeout-zero",
    "no-graceful-timer",
    "no-monitor-thread",
    "script-reloading",
    "log-level",
    "no-identity",
    "lazy-load",
)
# Traps only `restart` warns about: they cost a restart, not the running group.
RESTART_ONLY = frozenset({"lazy-load"})


@dataclass(frozen=True)
class Trap:
    key: str
    message: str

    @property
    def advice(self) -> str:
        """The message, with how to silence it when the choice is deliberate."""
        return f"{self.message} [trap {self.key}: if deliberate, --ack-trap {self.key}]"


def quiet_log(group: DaemonGroup) -> bool:
    """Whether mod_wsgi's info lines (how each daemon ended) are below the group's log level."""
    return group.wsgi_log_level in _QUIET_LEVELS


def check_keys(keys: tuple[str, ...] | list[str]) -> None:
    """ConfigError naming the known keys for an unknown one."""
    from wsgi_drain.errors import ConfigError

    unknown = [k for k in keys if k not in KEYS]
    if unknown:
        raise ConfigError(
            f"unknown trap(s) {', '.join(unknown)} to acknowledge; known: {', '.join(KEYS)}"
        )


def split(traps: list[Trap], acknowledged: tuple[str, ...]) -> tuple[list[Trap], list[Trap]]:
    """(still warned, acknowledged) traps."""
    return (
        [t for t in traps if t.key not in acknowledged],
        [t for t in traps if t.key in acknowledged],
    )


def find_traps(
    group: DaemonGroup, *, fds_readable: bool, express: Express | None = None
) -> list[Trap]:
    """Every trap in `group`'s configuration, in a stable order.

    On an instance mod_wsgi-express set up (`express`), each message names the
    express option that fixes it (its users never edit the generated file),
    and script reloading comes first: a setup-server run again has then
    already restarted every daemon, undrained.
    """
    traps = _directive_traps(group, fds_readable=fds_readable)
    if express is None:
        return traps
    worded = [
        Trap(t.key, express_mod.trap_message(t.key, group, express, t.message)) for t in traps
    ]
    return sorted(worded, key=lambda t: t.key != "script-reloading")


def _directive_traps(group: DaemonGroup, *, fds_readable: bool) -> list[Trap]:
    """Every trap, worded for a configuration someone wrote (directives and options)."""
    traps = []
    if group.graceful_timeout is None and group.eviction_timeout is None:
        traps.append(
            Trap(
                "no-drain-timeout",
                f"group {group.name!r} sets no graceful-timeout or eviction-timeout "
                f"({group.source}): the drain window is mod_wsgi's default 15 s; set it "
                "explicitly on WSGIDaemonProcess so it is a decision, not an accident",
            )
        )
    if group.shutdown_timeout == 0:
        traps.append(
            Trap(
                "shutdown-timeout-zero",
                f"group {group.name!r} has shutdown-timeout=0 ({group.source}): a process "
                "with a thread that never exits will never be aborted; set shutdown-timeout=5",
            )
        )
    if group.drain_window == 0:
        traps.append(
            Trap(
                "no-graceful-timer",
                f"group {group.name!r} has graceful-timeout=0 and no eviction-timeout "
                f"({group.source}): after SIGUSR1 a busy process waits for an idle moment for "
                "ever; set graceful-timeout=15",
            )
        )
    elif group.options.get("deadlock-timeout") == "0" and not group.options.get(
        "inactivity-timeout", "0"
    ).strip("0"):
        # mod_wsgi runs the graceful timer in its monitor thread, which only
        # exists when deadlock-timeout or inactivity-timeout is set.
        traps.append(
            Trap(
                "no-monitor-thread",
                f"group {group.name!r} sets deadlock-timeout=0 and no inactivity-timeout "
                f"({group.source}): mod_wsgi then runs no monitor thread and the graceful "
                "timer never fires; remove deadlock-timeout=0",
            )
        )
    if group.script_reloading:
        traps.append(
            Trap(
                "script-reloading",
                "WSGIScriptReloading is On (mod_wsgi's default): touching the WSGI script "
                "restarts the daemons outside any drain; set WSGIScriptReloading Off",
            )
        )
    if quiet_log(group):
        traps.append(
            Trap(
                "log-level",
                f"LogLevel {group.log_level!r} hides mod_wsgi's info lines, so wsgi-drain "
                "cannot tell a clean drain from a forced one; use LogLevel warn wsgi:info",
            )
        )
    if not group.preloaded:
        traps.append(
            Trap(
                "lazy-load",
                f"group {group.name!r} loads the app lazily ({group.source}): each new process "
                "imports it on its first request, which waits for the import. wsgi-drain warms "
                "the replacements before traffic returns in drain mode, but not in rolling mode "
                "nor when Apache respawns a process. Fix: add process-group="
                f"{group.name} application-group=%{{GLOBAL}} to its WSGIScriptAlias",
            )
        )
    if not fds_readable and not group.title:
        traps.append(
            Trap(
                "no-identity",
                f"group {group.name!r} sets no display-name and this user cannot read the "
                "daemons' sockets: its processes cannot be told from Apache's workers; add "
                "display-name=%{GROUP} (or run as root)",
            )
        )
    return traps
