"""The operator's own load-balancer program, for the command router: it drives HAProxy.

`lb-hook SOCKET BACKEND/SERVER divert|restore|state`, run by wsgi-drain
without a shell, the way an F5 or cloud CLI would be: divert and restore set
the server's state through HAProxy's runtime socket, state prints
``admin= sessions= queued= peers_up= status=``.  Test knobs in its
environment: it appends "GROUP ACTION" to $HOOK_LOG when set, hangs on the
action named in $HANG_ON (with a child, whose pid it writes next to the log)
and fails on $FAIL_ON.  Shared by the command router's tests and the bench.
"""

from __future__ import annotations

import stat
from pathlib import Path

HAPROXY_HOOK = r"""#!/usr/bin/python3
import csv, io, os, socket, subprocess, sys, time

sock_path, target, action = sys.argv[1], sys.argv[2], sys.argv[3]
backend, server = target.split("/")
assert os.environ["WSGI_DRAIN_ACTION"] == action
if os.environ.get("HOOK_LOG"):
    with open(os.environ["HOOK_LOG"], "a") as log:
        log.write(f"{os.environ.get('WSGI_DRAIN_GROUP')} {action}\n")
if os.environ.get("HANG_ON") == action:
    child = subprocess.Popen(["/bin/sleep", "300"])
    with open(os.environ["HOOK_LOG"] + ".child", "w") as f:
        f.write(str(child.pid))
    time.sleep(300)
if os.environ.get("FAIL_ON") == action:
    sys.exit("the load balancer said no")

def command(line):
    with socket.socket(socket.AF_UNIX) as s:
        s.settimeout(5)
        s.connect(sock_path)
        s.sendall(line.encode() + b"\n")
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    return data.decode()

if action in ("divert", "restore"):
    state = "drain" if action == "divert" else "ready"
    reply = command(f"set server {backend}/{server} state {state}")
    sys.exit(1 if reply.strip() else 0)
rows = list(csv.DictReader(io.StringIO(command(f"show stat {backend} 4 -1").lstrip("# "))))
me = next(r for r in rows if r["svname"] == server)
# The administrative state, not the status column: a drained server whose
# check fails shows DOWN there, and must still read as drained.
states = command(f"show servers state {backend}").splitlines()
header = states[1].lstrip("# ").split()
row = next(line.split() for line in states[2:] if line.split()[3:4] == [server])
bits = int(row[header.index("srv_admin_state")])
admin = "maint" if bits & 0x07 else "drain" if bits & 0x38 else "ready"
peers = sum(1 for r in rows if r["svname"] != server and r["status"].startswith("UP"))
print(f"admin={admin} sessions={me['scur']} queued={me['qcur']} peers_up={peers} "
      f"status={me['status'].replace(' ', '_')}")
"""


def write_haproxy_hook(path: Path) -> Path:
    """Write the program to `path`, executable by its owner only; returns `path`."""
    path.write_text(HAPROXY_HOOK)
    path.chmod(stat.S_IRWXU)
    return path
