"""The click command group and its main: every command line but a plain `check`'s.

`cli/__init__.py`'s `main` sends a plain `check` past click (`check_args.py`,
issue 22) and everything else here.
"""

from __future__ import annotations

import importlib
import sys

import click

from wsgi_drain import __version__
from wsgi_drain.cli.options import CONTEXT
from wsgi_drain.status import ExitStatus, NagiosStatus

# Each command's module, imported when the command is named: a `check` run by
# cron every minute loads none of the others (issue 22).  The top-level --help
# and a mistyped name (click's "Did you mean") load them all.
COMMAND_MODULES = {
    "restart": "wsgi_drain.cli.restart",
    "drain": "wsgi_drain.cli.divert",
    "undrain": "wsgi_drain.cli.divert",
    "check": "wsgi_drain.cli.check",
    "status": "wsgi_drain.cli.status",
    "reload": "wsgi_drain.cli.reload",
    "stop": "wsgi_drain.cli.stop",
}


class LazyGroup(click.Group):
    """A group whose commands are imported when first named (kept in `commands` then)."""

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in self.commands:
            if cmd_name not in COMMAND_MODULES:
                self.load_all()
                return None
            module = importlib.import_module(COMMAND_MODULES[cmd_name])
            self.add_command(getattr(module, cmd_name))
        return self.commands.get(cmd_name)

    def list_commands(self, ctx: click.Context) -> list[str]:
        self.load_all()
        return super().list_commands(ctx)

    def load_all(self) -> None:
        for name in COMMAND_MODULES:
            if name not in self.commands:
                self.get_command(click.Context(self), name)


@click.group(context_settings=CONTEXT, cls=LazyGroup)
@click.version_option(__version__, prog_name="wsgi-drain")
def cli() -> None:
    """Restart Apache mod_wsgi daemon process groups without losing a request.

    \b
      wsgi-drain restart --group myapp    divert, restart gracefully, verify, restore
      wsgi-drain drain   --group myapp    take the backend out of the router only
      wsgi-drain undrain --group myapp    put it back (also repairs an interrupted run)
      wsgi-drain check   --group myapp    health check for cron/monitoring (Nagios codes)
      wsgi-drain status                   Apache instances, groups, processes, routers
      wsgi-drain reload                   the safe apachectl graceful (configuration changes)
      wsgi-drain stop                     stop Apache for maintenance after its last request

    Settings come from options, WSGI_DRAIN_* variables, or /etc/wsgi-drain.toml
    (see README). Run any command with --help for its options and exit statuses.
    """


def main() -> None:
    """click's main. `check` reports bad usage as UNKNOWN (3), as Nagios expects."""
    try:
        cli.main(prog_name="wsgi-drain", standalone_mode=False)
    except click.exceptions.Exit as done:
        sys.exit(done.exit_code)
    except click.ClickException as err:
        is_check = len(sys.argv) > 1 and sys.argv[1] == "check"
        code = int(NagiosStatus.UNKNOWN) if is_check else err.exit_code
        if "--json" in sys.argv[1:]:
            # Asked for JSON: a script parses stdout, so the usage error is JSON too.
            from wsgi_drain import report

            report.print_json(report.error_dict("usage", code, err.format_message()))
        else:
            err.show()
        sys.exit(code)
    except (click.Abort, KeyboardInterrupt):
        click.echo("Aborted!", err=True)
        sys.exit(int(ExitStatus.INTERRUPTED))
