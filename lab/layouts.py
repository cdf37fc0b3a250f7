"""The distributions' own Apache layouts, rebuilt under a temporary directory.

`RhelLab` is RHEL/Fedora's httpd: the binary named ``httpd``, ServerRoot
with ``conf/httpd.conf``, ``conf.modules.d/*.conf`` and ``conf.d/*.conf``,
``modules`` a link to the module directory, PidFile ``run/httpd.pid`` and
``WSGISocketPrefix run/wsgi`` relative to ServerRoot.  It runs Debian's apache2
binary through a link named ``httpd``, with argv[0] ``/usr/sbin/httpd`` as
systemd gives it on RHEL: so the process is named ``httpd`` and the daemons'
titles are cut to that shorter argv[0], as on a RHEL host.

`DebianLab` is Debian's ``/etc/apache2`` as the package ships it: apache2.conf
reading ``${APACHE_RUN_DIR}`` and friends from ``envvars``, mods-/conf-/
sites-available with ``-enabled`` links, the group in a VirtualHost with its
own ErrorLog, started the way apache2.service starts it: ``apache2ctl start``
with APACHE_STARTED_BY_SYSTEMD set (which keeps apache2ctl from calling
systemctl).  APACHE_CONFDIR moves the tree out of /etc, exactly as
apache2ctl supports for a second instance: it passes ``-d CONFDIR`` to
apache2 and nothing else.

Neither reads or writes /etc, /run or /var; both stop only what they started.
"""

from __future__ import annotations

import os
import pwd
from pathlib import Path

from lab.apache import APACHE2, APACHE_MODULES, DEBIAN_MOD_WSGI, RUN_USER, ApacheLab
from lab.ports import LOOPBACK

RHEL_ARGV0 = "/usr/sbin/httpd"
APACHE2CTL = Path("/usr/sbin/apache2ctl")


def _link(target: Path, link: Path) -> None:
    link.parent.mkdir(parents=True, exist_ok=True)
    if link.is_symlink() or link.exists():
        link.unlink()
    link.symlink_to(target)


def _run_user() -> str:
    return RUN_USER if os.geteuid() == 0 else pwd.getpwuid(os.geteuid()).pw_name


class RhelLab(ApacheLab):
    """ApacheLab in RHEL's httpd layout; `server_root` plays /etc/httpd."""

    @property
    def server_root(self) -> Path:
        return self.public / "httpd"

    @property
    def socket_prefix(self) -> Path:
        return self.server_root / "run" / "wsgi"

    def _setup_dirs(self) -> None:
        super()._setup_dirs()
        root = self.server_root
        for sub in ("conf", "conf.d", "conf.modules.d", "logs", "run", "sbin"):
            (root / sub).mkdir(parents=True, exist_ok=True)
            (root / sub).chmod(0o755)
        # /etc/httpd/modules -> /usr/lib64/httpd/modules on RHEL.
        _link(APACHE_MODULES, root / "modules")
        _link(APACHE2, root / "sbin" / "httpd")
        self.conf_path = root / "conf" / "httpd.conf"
        self.pid_file = root / "run" / "httpd.pid"
        self.error_log = root / "logs" / "error_log"

    def _write_config(self, module_config: str) -> None:
        root = self.server_root
        user = _run_user()
        self._write(
            self.conf_path,
            f"""\
# RHEL 9's conf/httpd.conf, cut to what a daemon-mode host needs.
ServerRoot "{root}"
Listen {LOOPBACK}:{self.port}
Include conf.modules.d/*.conf
User {user}
Group {user}
ServerName {LOOPBACK}
# RHEL's httpd has these compiled in; Debian's binary, run here, does not.
PidFile run/httpd.pid
DefaultRuntimeDir run
ErrorLog "logs/error_log"
LogLevel warn wsgi:info
IncludeOptional conf.d/*.conf
""",
        )
        self._write(
            root / "conf.modules.d" / "00-mpm.conf",
            f"LoadModule mpm_{self.mpm}_module modules/mod_mpm_{self.mpm}.so\n",
        )
        self._write(
            root / "conf.modules.d" / "00-base.conf",
            "LoadModule authz_core_module modules/mod_authz_core.so\n",
        )
        wsgi = (
            f"LoadModule wsgi_module modules/{DEBIAN_MOD_WSGI.name}"
            if self.modwsgi == "debian"
            else self._wsgi_load_lines(module_config)
        )
        self._write(root / "conf.modules.d" / "10-wsgi-python3.conf", wsgi + "\n")
        self._write(
            root / "conf.d" / f"{self.group}.conf",
            f"WSGISocketPrefix run/wsgi\n{self._group_config()}",
        )

    def _command(self, action: str) -> tuple[list[str], str | None]:
        argv = [RHEL_ARGV0, "-d", str(self.server_root), "-f", "conf/httpd.conf", "-k", action]
        return argv, str(self.server_root / "sbin" / "httpd")


class DebianLab(ApacheLab):
    """ApacheLab in Debian's /etc/apache2 layout; `confdir` plays /etc/apache2."""

    @property
    def confdir(self) -> Path:
        return self.public / "apache2"

    @property
    def run_dir(self) -> Path:
        """${APACHE_RUN_DIR}: /var/run/apache2 on a stock host."""
        return self.public / "run"

    @property
    def log_dir(self) -> Path:
        return self.public / "log"

    @property
    def socket_prefix(self) -> Path:
        return self.run_dir / "wsgi"

    @property
    def argv0(self) -> str:
        # apache2ctl runs /usr/sbin/apache2 by its full path.
        return str(APACHE2)

    def _setup_dirs(self) -> None:
        super()._setup_dirs()
        for sub in (self.confdir, self.run_dir, self.log_dir, self.public / "lock"):
            sub.mkdir(parents=True, exist_ok=True)
            sub.chmod(0o755)
        self.conf_path = self.confdir / "apache2.conf"
        self.pid_file = self.run_dir / "apache2.pid"
        # mod_wsgi logs a group's lifecycle to its VirtualHost's ErrorLog.
        self.error_log = self.log_dir / f"{self.group}_error.log"

    def _write_config(self, module_config: str) -> None:
        conf = self.confdir
        user = _run_user()
        self._write(
            conf / "envvars",
            f"""\
# envvars - default environment variables for apache2ctl (Debian's, with the
# directories moved under this lab)
unset HOME
if [ "${{APACHE_CONFDIR##/etc/apache2-}}" != "${{APACHE_CONFDIR}}" ] ; then
\tSUFFIX="-${{APACHE_CONFDIR##/etc/apache2-}}"
else
\tSUFFIX=
fi
export APACHE_RUN_USER={user}
export APACHE_RUN_GROUP={user}
export APACHE_PID_FILE={self.pid_file}
export APACHE_RUN_DIR={self.run_dir}
export APACHE_LOCK_DIR={self.public / "lock"}
export APACHE_LOG_DIR={self.log_dir}
export LANG=C
export LANG
""",
        )
        self._write(
            conf / "apache2.conf",
            """\
# Debian 12's apache2.conf, cut to its directives.
DefaultRuntimeDir ${APACHE_RUN_DIR}
PidFile ${APACHE_PID_FILE}
Timeout 300
User ${APACHE_RUN_USER}
Group ${APACHE_RUN_GROUP}
HostnameLookups Off
ErrorLog ${APACHE_LOG_DIR}/error.log
LogLevel warn wsgi:info
IncludeOptional mods-enabled/*.load
IncludeOptional mods-enabled/*.conf
Include ports.conf
IncludeOptional conf-enabled/*.conf
IncludeOptional sites-enabled/*.conf
""",
        )
        self._write(conf / "ports.conf", f"Listen {LOOPBACK}:{self.port}\n")
        loads = {
            f"mpm_{self.mpm}": f"LoadModule mpm_{self.mpm}_module "
            f"{APACHE_MODULES}/mod_mpm_{self.mpm}.so",
            "authz_core": f"LoadModule authz_core_module {APACHE_MODULES}/mod_authz_core.so",
            "wsgi": f"LoadModule wsgi_module {DEBIAN_MOD_WSGI}"
            if self.modwsgi == "debian"
            else self._wsgi_load_lines(module_config),
        }
        for name, line in loads.items():
            self._enable(conf, "mods", f"{name}.load", line + "\n")
        self._enable(
            conf,
            "conf",
            "wsgi-socket.conf",
            "# Server context only: mod_wsgi's sockets beside Apache's runtime files.\n"
            "WSGISocketPrefix ${APACHE_RUN_DIR}/wsgi\n"
            "WSGIRestrictEmbedded On\n",
        )
        self._enable(
            conf,
            "sites",
            f"{self.group}.conf",
            f"""\
{self.before_config}
<VirtualHost {LOOPBACK}:{self.port}>
    ServerName {LOOPBACK}
    ErrorLog ${{APACHE_LOG_DIR}}/{self.group}_error.log
{self._daemon_directives()}
</VirtualHost>
{self.extra_config}
""",
        )

    def _enable(self, conf: Path, kind: str, name: str, text: str) -> None:
        """Write KIND-available/NAME and link it from KIND-enabled, as a2enmod/a2ensite do."""
        available = conf / f"{kind}-available" / name
        available.parent.mkdir(parents=True, exist_ok=True)
        self._write(available, text)
        _link(Path("..") / f"{kind}-available" / name, conf / f"{kind}-enabled" / name)

    def _env(self) -> dict[str, str]:
        # What apache2.service gives apache2ctl, plus the moved configuration.
        return {
            **super()._env(),
            "APACHE_CONFDIR": str(self.confdir),
            "APACHE_STARTED_BY_SYSTEMD": "true",
        }

    def _command(self, action: str) -> tuple[list[str], str | None]:
        return [str(APACHE2CTL), action], None
