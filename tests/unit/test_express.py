"""mod_wsgi-express: recognised by what its apachectl does, proven by its own title, told in
its own options.

The configuration below has the shape mod_wsgi-express 6.x writes (written here by hand:
the directives wsgi-drain reads, quoted as express quotes them); the argv is the one its
apachectl gives httpd.  A non-express instance with the very same files is refused as
before: the express rules never weaken the proof for anyone else.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from wsgi_drain.apacheconf import ApacheConfig, parse_config
from wsgi_drain.errors import GroupNotFoundError, IdentityError
from wsgi_drain.express import Express, detect, express_title, quiet_endings_note
from wsgi_drain.identity import Change, Child, GroupSocket, Observation, prove
from wsgi_drain.traps import KEYS, find_traps

GROUP = "127.0.0.1:8000"
TITLE = "(wsgi:127.0.0.1:8000:0)"
# What express's apachectl gives httpd: -f, and the defines it chose.
DEFINES = (
    "MOD_WSGI_IMPORT_HANDLER_SCRIPT",
    "MOD_WSGI_MULTIPROCESS",
    "MOD_WSGI_MPM_ENABLE_EVENT_MODULE",
    "MOD_WSGI_MPM_EXISTS_EVENT_MODULE",
)


def express_conf(
    root: Path,
    *,
    group: str = GROUP,
    title: str = TITLE,
    extra: str = "",
    options: str = "graceful-timeout=15 shutdown-timeout=5 deadlock-timeout=60",
    log_level: str = "warn",
) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "apachectl").write_text("#!/bin/sh\n")
    (root / "handler.wsgi").write_text("")
    conf = root / "httpd.conf"
    conf.write_text(
        f"ServerRoot '{root}'\n"
        f"PidFile '{root}/httpd.pid'\n"
        f"WSGISocketPrefix {root}/wsgi\n"
        f"WSGIDaemonProcess '{group}' \\\n"
        f"   display-name='{title}' \\\n"
        f"   processes=3 threads=5 {options}\n"
        "<IfDefine MOD_WSGI_DISABLE_RELOADING>\nWSGIScriptReloading Off\n</IfDefine>\n"
        f"LogLevel {log_level}\n"
        f"WSGIHandlerScript wsgi-handler '{root}/handler.wsgi' \\\n"
        f"    process-group='{group}' application-group=%{{GLOBAL}}\n"
        "<IfDefine MOD_WSGI_IMPORT_HANDLER_SCRIPT>\n"
        f"WSGIImportScript '{root}/handler.wsgi' \\\n"
        f"    process-group='{group}' application-group=%{{GLOBAL}}\n"
        "</IfDefine>\n" + extra
    )
    return conf


def argv(conf: Path, *defines: str) -> list[str]:
    words = ["apache2 (mod_wsgi-express)", "-f", str(conf)]
    for name in (*DEFINES, *defines):
        words.append(f"-D{name}")
    return [*words, "-k", "start"]


def read(conf: Path, *defines: str) -> ApacheConfig:
    return parse_config(conf, environ={}, defines=(*DEFINES, *defines))


def observation(title: str = TITLE, room: int = len("apache2 (mod_wsgi-express)")) -> Observation:
    sock = GroupSocket(path="/tmp/x/wsgi.100.0.1.sock", inode=1001, id=1)
    children = tuple(Child(10 + i, 1.0, title, 33, frozenset({1})) for i in range(3))
    return Observation(
        parent_pid=100,
        title_room=room,
        sockets={1: sock},
        children=children,
        loaded_at=time.time() - 60,
        as_root=False,
    )


def rerun(conf: Path) -> list[Change]:
    """What setup-server run again with the same arguments leaves: the files newer."""
    return [Change(conf, time.time())]


# -- recognising express -----------------------------------------------------------


def test_express_detected_from_apachectls_argv_and_its_server_root(tmp_path: Path) -> None:
    conf = express_conf(tmp_path / "root")
    found = detect(read(conf), argv(conf))
    assert found == Express(tmp_path / "root", frozenset(DEFINES))
    assert found.reloading
    with_flag = detect(read(conf), argv(conf, "MOD_WSGI_DISABLE_RELOADING"))
    assert with_flag is not None and not with_flag.reloading


@pytest.mark.parametrize("missing", ["apachectl", "handler.wsgi", "mpm-define", "-f"])
def test_express_not_detected_without_each_mark(tmp_path: Path, missing: str) -> None:
    conf = express_conf(tmp_path / "root")
    words = argv(conf)
    if missing in ("apachectl", "handler.wsgi"):
        (tmp_path / "root" / missing).unlink()
    elif missing == "mpm-define":
        words = [w for w in words if "MPM_ENABLE" not in w]
    else:
        words = [w for w in words if w not in ("-f", str(conf))]
    assert detect(read(conf), words) is None


def test_express_title_only_of_express_form_for_the_groups_name(tmp_path: Path) -> None:
    for title, expected in [
        (TITLE, TITLE),
        (f"(wsgi:{GROUP})", f"(wsgi:{GROUP})"),
        ("(wsgi:127.0.0.1:9999:0)", None),  # another port: not this group's
        ("(wsgi:other)", None),
        ("%{GROUP}", None),  # mod_wsgi's own, proven by the general rule
    ]:
        conf = express_conf(tmp_path / title.strip("(%{})").replace(":", "_"), title=title)
        assert express_title(read(conf).group(GROUP)) == expected, title


# -- identity: the deploy habit ----------------------------------------------------


def test_express_title_proves_the_group_after_setup_server_ran_again(tmp_path: Path) -> None:
    conf = express_conf(tmp_path / "root")
    cfg = read(conf)
    express = detect(cfg, argv(conf))
    identity = prove(cfg, cfg.group(GROUP), observation(), rerun(conf), express=express)
    assert identity.socket.id == 1
    assert "mod_wsgi-express's title" in identity.proof
    assert not identity.config_current
    (warning,) = identity.warnings
    assert "setup-server run again" in warning and "apachectl restart" in warning
    assert "reload Apache" not in warning


def test_express_non_express_instance_with_the_same_files_still_refuses(tmp_path: Path) -> None:
    # The very same configuration and processes, but Apache was not started by
    # express's apachectl: a free display-name proves nothing, as before.
    conf = express_conf(tmp_path / "root")
    cfg = read(conf)
    with pytest.raises(IdentityError) as info:
        prove(cfg, cfg.group(GROUP), observation(), rerun(conf))
    assert "configuration changed after Apache loaded it" in str(info.value)
    assert "display-name=%{GROUP}" in str(info.value)
    not_express = detect(cfg, [w for w in argv(conf) if "MPM_ENABLE" not in w])
    assert not_express is None
    with pytest.raises(IdentityError):
        prove(cfg, cfg.group(GROUP), observation(), rerun(conf), express=not_express)


def test_express_title_proof_refuses_a_cut_title(tmp_path: Path) -> None:
    # Apache started some other way than express's apachectl: argv[0] too short.
    conf = express_conf(tmp_path / "root")
    cfg = read(conf)
    express = detect(cfg, argv(conf))
    cut = observation(TITLE[:17], room=17)
    with pytest.raises(IdentityError) as info:
        prove(cfg, cfg.group(GROUP), cut, rerun(conf), express=express)
    message = str(info.value)
    assert "--process-group NAME" in message and "apachectl" in message
    assert "display-name=%{GROUP}" not in message and "WSGIDaemonProcess" not in message


def test_express_title_proof_refuses_a_title_another_group_shares(tmp_path: Path) -> None:
    extra = f"WSGIDaemonProcess copy display-name='{TITLE}'\n"
    conf = express_conf(tmp_path / "root", extra=extra)
    cfg = read(conf)
    express = detect(cfg, argv(conf))
    with pytest.raises(IdentityError):
        prove(cfg, cfg.group(GROUP), observation(), rerun(conf), express=express)


def test_express_title_proof_refuses_when_the_uid_in_the_title_changed(tmp_path: Path) -> None:
    # setup-server run again by another user: the files' title carries uid 1000,
    # the running daemons uid 0's; which is which is not proven.
    conf = express_conf(tmp_path / "root", title="(wsgi:127.0.0.1:8000:1000)")
    cfg = read(conf)
    express = detect(cfg, argv(conf))
    with pytest.raises(IdentityError) as info:
        prove(cfg, cfg.group(GROUP), observation(), rerun(conf), express=express)
    message = str(info.value)
    assert "as the user that first ran it" in message and "--process-group NAME" in message


def test_express_process_group_title_proves_too(tmp_path: Path) -> None:
    conf = express_conf(tmp_path / "root", group="shop", title="(wsgi:shop)")
    cfg = read(conf)
    identity = prove(cfg, cfg.group("shop"), observation("(wsgi:shop)"), rerun(conf), express=None)
    # (wsgi:NAME) is mod_wsgi's own %{GROUP} form: proven without express's rule...
    assert identity.socket.id == 1 and "mod_wsgi-express" not in identity.proof
    # ... and on express, the rewritten files are said in express's terms.
    identity = prove(
        cfg, cfg.group("shop"), observation("(wsgi:shop)"), rerun(conf),
        express=detect(cfg, argv(conf)),
    )  # fmt: skip
    (warning,) = identity.warnings
    assert "setup-server run again" in warning and "reload Apache" not in warning


def test_express_a_process_group_title_on_express_is_proven_by_mod_wsgis_own_rule(
    tmp_path: Path,
) -> None:
    # (wsgi:NAME) proves by mod_wsgi's %{GROUP} rule first: the proof names no express rule.
    conf = express_conf(tmp_path / "root", group="shop", title="(wsgi:shop)")
    cfg = read(conf)
    express = detect(cfg, argv(conf))
    assert express is not None
    identity = prove(cfg, cfg.group("shop"), observation("(wsgi:shop)"), [], express=express)
    assert identity.proof == (
        "socket 1, processes titled '(wsgi:shop)', configuration unchanged since Apache loaded it"
    )


# -- traps and refusals in express's terms -----------------------------------------

DIRECTIVES = ("WSGIScriptReloading", "LogLevel ", "WSGIDaemonProcess", "WSGIScriptAlias",
              "display-name=")  # fmt: skip
EXPRESS_OPTIONS = {
    "no-drain-timeout": "--graceful-timeout",
    "shutdown-timeout-zero": "--shutdown-timeout 5",
    "no-graceful-timer": "--graceful-timeout 15",
    "no-monitor-thread": "--deadlock-timeout 0",
    "script-reloading": "--disable-reloading",
    "log-level": "--log-level info",
    "lazy-load": "--application-group",
    "no-identity": "--process-group NAME",
}


def test_express_every_trap_names_the_express_option_not_a_directive(tmp_path: Path) -> None:
    assert set(EXPRESS_OPTIONS) == set(KEYS)  # a new trap needs its express words here
    met: dict[str, str] = {}
    for options in (
        "shutdown-timeout=0 deadlock-timeout=60",  # no drain timeout, shutdown 0
        "graceful-timeout=0 shutdown-timeout=5",  # no graceful timer
        "graceful-timeout=15 deadlock-timeout=0",  # no monitor thread
    ):
        root = tmp_path / str(len(met))
        conf = express_conf(root, options=options, title=f"(wsgi:{GROUP})")
        # Lazy: express's %{...} application group is not preloaded (no define).
        cfg = parse_config(conf, environ={}, defines=("MOD_WSGI_MPM_ENABLE_EVENT_MODULE",))
        express = detect(cfg, ["apache2", "-f", str(conf), "-DMOD_WSGI_MPM_ENABLE_EVENT_MODULE"])
        assert express is not None
        for trap in find_traps(cfg.group(GROUP), fds_readable=False, express=express):
            met[trap.key] = trap.message
    cfg = read(express_conf(tmp_path / "untitled", title=TITLE))
    untitled = cfg.group(GROUP)
    assert set(met) | {"no-identity"} == set(KEYS)
    from wsgi_drain.express import trap_message

    met["no-identity"] = trap_message("no-identity", untitled, Express(tmp_path, frozenset()), "")
    for key, message in met.items():
        assert EXPRESS_OPTIONS[key] in message, (key, message)
        assert "setup-server" in message or "root" in message, (key, message)
        for directive in DIRECTIVES:
            assert directive not in message, (key, directive, message)


def test_express_reloading_is_said_first_in_its_own_words(tmp_path: Path) -> None:
    conf = express_conf(tmp_path / "root")
    cfg = read(conf)
    express = detect(cfg, argv(conf))
    traps = find_traps(cfg.group(GROUP), fds_readable=True, express=express)
    assert [t.key for t in traps] == ["script-reloading", "log-level"]
    first = traps[0].message
    assert "--disable-reloading" in first and "handler.wsgi" in first and "undrained" in first
    # With --disable-reloading (and --log-level info) express sets no trap at all.
    quiet = express_conf(tmp_path / "quiet", log_level="info")
    cfg = read(quiet, "MOD_WSGI_DISABLE_RELOADING")
    express = detect(cfg, argv(quiet, "MOD_WSGI_DISABLE_RELOADING"))
    assert find_traps(cfg.group(GROUP), fds_readable=True, express=express) == []


def test_express_same_traps_without_express_keep_the_directive_words(tmp_path: Path) -> None:
    conf = express_conf(tmp_path / "root")
    traps = find_traps(read(conf).group(GROUP), fds_readable=True)
    assert [t.key for t in traps] == ["script-reloading", "log-level"]
    assert "WSGIScriptReloading Off" in traps[0].message
    assert "LogLevel warn wsgi:info" in traps[1].message


def test_express_unknown_group_says_express_names_it_host_port(tmp_path: Path) -> None:
    from wsgi_drain.discovery import ApacheInstance

    conf = express_conf(tmp_path / "root")
    cfg = read(conf)
    instance = ApacheInstance(1, 1.0, "/usr/sbin/apache2", conf, cfg, detect(cfg, argv(conf)))
    with pytest.raises(GroupNotFoundError) as info:
        instance.group("myapp")
    message = str(info.value)
    assert GROUP in message and "--process-group NAME" in message and "--group" in message
    plain = ApacheInstance(1, 1.0, "/usr/sbin/apache2", conf, cfg)
    with pytest.raises(GroupNotFoundError) as info:
        plain.group("myapp")
    assert "--process-group" not in str(info.value)


def test_express_quiet_endings_note_names_the_option(tmp_path: Path) -> None:
    conf = express_conf(tmp_path / "root")
    cfg = read(conf)
    note = quiet_endings_note(3, cfg.group(GROUP), detect(cfg, argv(conf)))
    assert note.startswith("3 old process(es) ended as 'exited'")
    assert "--log-level info" in note and "LogLevel" not in note
    assert "LogLevel warn wsgi:info" in quiet_endings_note(3, cfg.group(GROUP), None)


def test_express_title_names_its_group_for_the_unprivileged_title_path(tmp_path: Path) -> None:
    # `check` as a monitoring user (or root without CAP_SYS_PTRACE) tells the
    # daemons by title alone: express's whole title names the group only on express.
    from wsgi_drain.identity import title_names_group

    conf = express_conf(tmp_path / "root")
    cfg = read(conf)
    express = detect(cfg, argv(conf))
    group = cfg.group(GROUP)
    assert title_names_group(cfg, group, TITLE, express)
    assert not title_names_group(cfg, group, TITLE, None)  # not express: a free display-name
    assert not title_names_group(cfg, group, TITLE[:17], express)  # cut
    shared = express_conf(
        tmp_path / "shared", extra=f"WSGIDaemonProcess copy display-name='{TITLE}'\n"
    )
    cfg = read(shared)
    assert not title_names_group(cfg, cfg.group(GROUP), TITLE, detect(cfg, argv(shared)))


def test_express_title_is_shared_only_by_a_group_showing_the_very_same_title(
    tmp_path: Path,
) -> None:
    # A group without display-name, or titled otherwise (sorting before), shares nothing.
    from wsgi_drain.identity import title_names_group

    extra = "WSGIDaemonProcess plain\nWSGIDaemonProcess other display-name='(wsgi:0)'\n"
    conf = express_conf(tmp_path / "root", extra=extra)
    cfg = read(conf)
    assert title_names_group(cfg, cfg.group(GROUP), TITLE, detect(cfg, argv(conf)))


def test_express_a_free_display_name_does_not_name_the_group_even_on_express(
    tmp_path: Path,
) -> None:
    from wsgi_drain.identity import title_names_group

    conf = express_conf(tmp_path / "root", title="myapp-web")
    cfg = read(conf)
    express = detect(cfg, argv(conf))
    assert express is not None and express_title(cfg.group(GROUP)) is None
    assert not title_names_group(cfg, cfg.group(GROUP), "myapp-web", express)


def test_express_exited_is_explained_once_per_run_not_per_process(tmp_path: Path) -> None:
    from wsgi_drain.applog import RunLog
    from wsgi_drain.config import Settings
    from wsgi_drain.discovery import ApacheInstance, GroupProcesses
    from wsgi_drain.errorlog import ErrorLogTail
    from wsgi_drain.interrupts import Interrupts
    from wsgi_drain.outcome import Outcome, ProcessRecord
    from wsgi_drain.restart.endings import quiet_log_note
    from wsgi_drain.restart.records import Run, Target, Watched

    def run_with(log_level: str, endings: list[str]) -> list[str]:
        root = tmp_path / f"{log_level}-{len(endings)}"
        conf = express_conf(root, log_level=log_level)
        cfg = read(conf)
        instance = ApacheInstance(1, 1.0, "/usr/sbin/apache2", conf, cfg, detect(cfg, argv(conf)))
        group = cfg.group(GROUP)
        target = Target(instance, GroupProcesses(group, None, (), "socket"), 3, 1)
        (root / "error_log").write_text("")
        watched = Watched(log=RunLog(ErrorLogTail(root / "error_log"), GROUP))
        outcome = Outcome(group=GROUP, mode="rolling", requested_mode="rolling", signal="SIGUSR1")
        outcome.processes = [ProcessRecord(old_pid=10 + i, ending=e) for i, e in enumerate(endings)]
        with Interrupts() as interrupts:
            run = Run(Settings(group=GROUP), lambda kind, message: None, interrupts, outcome)
            quiet_log_note(run, target, watched)
            quiet_log_note(run, target, watched)  # a failed run reads the endings again
        return [n for n in outcome.notes if "ended as 'exited'" in n]

    (note,) = run_with("warn", ["exited", "exited", "exited"])
    assert note.startswith("3 old process(es)") and "--log-level info" in note
    assert run_with("info", ["exited", "exited"]) == []  # the log tells endings apart
    assert run_with("warn", ["drained"]) == []


def test_express_group_name_in_the_toml_file_is_a_quoted_key(tmp_path: Path) -> None:
    from wsgi_drain.config import read_file, resolve

    toml = tmp_path / "wsgi-drain.toml"
    toml.write_text(
        f'[groups."{GROUP}"]\n'
        f'apache_pidfile = "/srv/express/httpd.pid"\nhealth_url = "http://{GROUP}/health"\n'
    )
    toml.chmod(0o600)
    settings = resolve(GROUP, {}, read_file(toml), str(toml))
    assert str(settings.apache_pidfile) == "/srv/express/httpd.pid"
    assert settings.health_url == f"http://{GROUP}/health"
