"""`restart --group A --group B` and `--all-groups`: which groups, their settings, the report.

A run of one group (one --group, or --all-groups on an instance of one
group) goes on exactly as before, through `restart`'s own path; only a run
of several comes here.
"""

from __future__ import annotations

import os
import sys
from typing import Any, NoReturn

from wsgi_drain import config, report_groups
from wsgi_drain._compat import print_bug
from wsgi_drain.cli.options import settings
from wsgi_drain.errors import UsageError
from wsgi_drain.report import ProgressPrinter


def choose_groups(
    kwargs: dict[str, Any], extra: dict[str, Any], guarded: dict[str, Any]
) -> dict[str, str | None]:
    """The groups of the run, each with its --health-url (None: the file's, if any).

    Pops --group, --all-groups and --health-url from `kwargs`; for a run of
    one group, puts back the single `group` and `health_url` that
    `settings()` reads, so that run is resolved exactly as before.
    """
    names = list(dict.fromkeys(kwargs.pop("group")))
    all_groups = kwargs.pop("all_groups")
    urls = kwargs.pop("health_url")
    if not names and not all_groups and os.environ.get("WSGI_DRAIN_GROUP"):
        names = [os.environ["WSGI_DRAIN_GROUP"]]  # one name, as for every other command
    if all_groups and names:
        raise UsageError("--all-groups restarts every group: give it or --group, not both")
    if all_groups:
        from wsgi_drain.restart.several import instance_groups

        # The instance from the command line and the file's top level (no group's table).
        base = settings({**kwargs, "group": "", "health_url": None}, extra, guarded)
        names = instance_groups(base.apache_pidfile, base.apache_config)
    if not names:
        raise UsageError(
            "which group? Give --group NAME (repeat it for several groups in one run), "
            "--all-groups, or WSGI_DRAIN_GROUP"
        )
    by_group = config.health_urls_by_group(urls, names)
    if len(names) == 1:
        kwargs["group"], kwargs["health_url"] = names[0], by_group.get(names[0])
    kwargs["from_apache"] = all_groups
    return {name: by_group.get(name) for name in names}


def restart_several(
    groups: dict[str, str | None],
    kwargs: dict[str, Any],
    extra: dict[str, Any],
    as_json: bool,
    quiet: bool,
    dry_run: bool,
    force: bool,
    guarded: dict[str, Any],
) -> NoReturn:
    """Resolve each group's settings ([groups.NAME] under the command line), run, report, exit."""
    from wsgi_drain.restart.several import restart_groups

    # Names --all-groups read from Apache are not typed: no typo check for them.
    typed = not kwargs.pop("from_apache", False)
    each = config.one_host(
        [
            settings(
                {**kwargs, "group": name, "health_url": url},
                dict(extra),
                guarded,
                typed=typed,
            )
            for name, url in groups.items()
        ]
    )
    _refuse_one_group_only(each)
    py_spy = guarded["py_spy"]
    progress = ProgressPrinter(quiet=quiet)
    outcome = restart_groups(each, dry_run=dry_run, force=force, progress=progress, py_spy=py_spy)
    if as_json:
        report_groups.print_json(report_groups.groups_dict(outcome))
    else:
        report_groups.print_groups(outcome)
    bug = next(
        (o.unexpected for o in (outcome.host, *outcome.groups) if o.unexpected is not None), None
    )
    if bug is not None:
        print_bug(bug)
    # Every failed group's error is in the report on stdout already: not again on
    # stderr (decision 59).
    sys.exit(int(outcome.status))


def _refuse_one_group_only(each: list[config.Settings]) -> None:
    """What a run of several groups does not do yet: refused with the fix, never ignored.

    --rollback, --leftovers stop and restart's --textfile are phases of the
    one-group run (restart/sequence.py); a several-group run that skipped them
    silently would leave broken code serving, or processes running, unsaid.
    """
    for s in each:
        asked = [
            what
            for what, on in (
                ("--rollback (rollback)", bool(s.rollback)),
                ("--leftovers stop (leftovers)", s.leftovers == "stop"),
                ("--textfile (textfile)", s.textfile is not None),
            )
            if on
        ]
        if asked:
            raise UsageError(
                f"{', '.join(asked)} for group {s.group!r} works on one group per run for now: "
                "restart each group with its own `wsgi-drain restart --group NAME`, or drop "
                "the option (or the TOML key) for the several-group run"
            )
