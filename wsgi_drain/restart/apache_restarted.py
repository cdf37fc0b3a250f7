"""Apache restarted underneath the run: the group is found and proven afresh.

An `apachectl graceful`/`restart` (a deploy hook, logrotate) during the run
replaces the parent's generation, and with it the socket the group was proven
on.  Every re-read of the group goes through `reader`, which follows Apache
through that and says so once; this module is the only writer of the Target
after discovery.
"""

from __future__ import annotations

from collections.abc import Callable

import psutil

from wsgi_drain import procfs
from wsgi_drain.deadline import Deadline
from wsgi_drain.discovery import GroupProcesses, find_group_apache, group_processes, reread
from wsgi_drain.errors import NotFoundError
from wsgi_drain.restart.records import Run, Target

# How long Apache may take to bring the group back after restarting itself.
APACHE_RESTART_WAIT = 15.0


def reader(run: Run, target: Target) -> Callable[[], GroupProcesses]:
    """Re-read the group's members; follows Apache through a restart of its own."""

    def read() -> GroupProcesses:
        try:
            current = reread(target.instance, target.procs)
        except NotFoundError:
            if _same_generation(target):
                raise
            current = _after_apache_restart(run, target)
        if not target.apache_restarted and _generation_of(current) != _generation_of(target.procs):
            _note_apache_restart(run, target, current)
        return current

    return read


def _generation_of(procs: GroupProcesses) -> tuple[int | None, str | None]:
    sock = procs.socket
    return (sock.inode if sock else None, sock.generation if sock else None)


def _same_generation(target: Target) -> bool:
    """Does the Apache parent still hold the socket the group was proven on?"""
    sock = target.procs.socket
    if sock is None or not psutil.pid_exists(target.instance.pid):
        return False
    try:
        return sock.inode in procfs.socket_inodes(target.instance.pid)
    except OSError:
        return False


def _after_apache_restart(run: Run, target: Target) -> GroupProcesses:
    """The group once Apache, restarted under this run (`apachectl graceful`/`restart`,
    or stopped and started), has brought it up again; found and proven afresh.

    Apache re-reads its configuration when it restarts, so the instance and
    the group are discovered again from scratch: the old proof means nothing
    for the new generation.  Waits at most APACHE_RESTART_WAIT, then lets the
    last NotFoundError through.
    """
    s = run.settings
    wait = Deadline(APACHE_RESTART_WAIT)
    while True:
        try:
            instance = find_group_apache(s)
            current = group_processes(instance, instance.config.group(s.group))
            if current.processes:
                break
        except NotFoundError:
            if wait.expired():
                raise
        if wait.expired():
            break
        run.interrupts.sleep(0.2)
    if instance.pid != target.instance.pid:
        run.outcome.apache_pid = instance.pid
    target.instance = instance
    return current


def _note_apache_restart(run: Run, target: Target, current: GroupProcesses) -> None:
    """Say, once, that Apache restarted the group itself during the run."""
    new_parent = target.instance.pid != target.parent_pid
    target.apache_restarted = (
        "Apache was restarted during the run ("
        + (f"new parent pid {target.instance.pid}" if new_parent else "new generation")
        + "): the group was verified as it now stands"
    )
    # Later reads compare against the new generation; the old processes stay.
    target.procs = GroupProcesses(
        current.group,
        current.socket,
        target.procs.processes,
        current.method,
        current.identity,
    )
    run.warn(target.apache_restarted)
    run.outcome.apache_restarted = target.apache_restarted
