"""The demo: a real restart under load, on loopback, start to finish.

Starts two Apache + mod_wsgi hosts (daemon mode, processes=3) behind a real
HAProxy in a temporary directory, sends ~70 req/s through HAProxy plus one
4-second request pinned to host `a`, runs the real `wsgi-drain restart` on
host `a`, prints its report and the client's failed-request count, and stops
everything it started.  Only 127.0.0.1 is ever contacted.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from lab import LabError, LoadLoop, slow_request, two_hosts, wsgi_drain_command


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--modwsgi", choices=["debian", "pypi"], default="debian")
    parser.add_argument("--mode", choices=["drain", "rolling"], default="drain")
    parser.add_argument("--json", action="store_true", help="print wsgi-drain's JSON report")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="wsgi-drain-demo-") as tmp:
        root = Path(tmp)
        try:
            command = wsgi_drain_command()
            # The app preloaded, as mod_wsgi's docs advise (process-group= and
            # application-group= on WSGIScriptAlias): the demo shows a clean run,
            # not a warning about its own sample configuration.
            with two_hosts(root, args.modwsgi, daemon_options=TIMEOUTS, preload=True) as stack:
                a, b, haproxy = stack.a, stack.b, stack.haproxy
                print(f"demo: Apache a {a.url} (pid {a.parent_pid}, daemons {a.daemon_pids()})")
                print(f"demo: Apache b {b.url}; HAProxy {haproxy.url}; mod_wsgi: {args.modwsgi}")
                load = LoadLoop(haproxy.url + "/", max_requests=5000, max_seconds=60)
                load.start()
                time.sleep(1.0)
                slow = slow_request(haproxy.url + "/slow?s=4", 4)
                time.sleep(0.5)
                print("demo: load running, one 4 s request in flight on a; restarting a:\n")
                restart = [
                    *command, "restart", "--group", "myapp",
                    "--apache-pidfile", str(a.pid_file),
                    "--health-url", f"{a.url}/health",
                    "--state-dir", str(stack.state_dir),
                    "--mode", args.mode,
                ]  # fmt: skip
                if args.mode == "drain":
                    restart += ["--haproxy", f"{haproxy.admin_socket}:be_app/a"]
                if args.json:
                    restart.append("--json")
                done = subprocess.run(restart, check=False, timeout=120)
                time.sleep(1.0)
                load.stop()
                summary = load.summary()
                long_one = slow.result(timeout=30)
        except LabError as err:
            print(f"demo: could not start the stack: {err}", file=sys.stderr)
            return 1
    failed = ", ".join(f"{v} {k}" for k, v in summary.counts.items() if k != "ok" and v)
    print(
        f"\ndemo: wsgi-drain exited {done.returncode}; the 4 s request got "
        f"{long_one.status or long_one.outcome}; load: {summary.total} requests, "
        f"{summary.failures} failed{f' ({failed})' if failed else ''}, "
        f"p99 {summary.p99 * 1000:.0f} ms"
    )
    print("demo: everything started was stopped")
    return 0 if done.returncode == 0 and summary.failures == 0 else 1


# Explicit, as apache-conf/ recommends: the drain window is a decision.
TIMEOUTS = {"graceful-timeout": 15, "shutdown-timeout": 5}

if __name__ == "__main__":
    sys.exit(main())
