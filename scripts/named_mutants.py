"""The mutants issue 25 named, each put alone into a throw-away copy: the unit suite must fail.

Run through `scripts/mutants named`.  Each mutant breaks one safety rule the way
the audit did; the fast suite (tests/unit) must fail against every one of them.
Prints, per mutant, KILLED with the first failing test or SURVIVED; exits 1 if
any survived.  The work tree is never written to.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class Mutant:
    name: str
    path: str
    old: str
    new: str


MUTANTS = (
    Mutant(
        "the membership re-check right before a signal always passes",
        "wsgi_drain/discovery.py",
        '    """Re-check, right before signalling, that `proc` is the same process and in the'
        ' group."""\n',
        '    """Re-check, right before signalling, that `proc` is the same process and in the'
        ' group."""\n    return True\n',
    ),
    Mutant(
        "the title proof accepts a title that several groups' sockets share",
        "wsgi_drain/identity.py",
        "    return matching[0] if len(matching) == 1 else None\n",
        "    return matching[0] if matching else None\n",
    ),
    Mutant(
        "a configuration edited in the clock tick Apache loaded it is not seen as changed",
        "wsgi_drain/identity.py",
        "        if when >= since:\n",
        "        if when > since:\n",
    ),
    Mutant(
        "HAProxy's drain is counted done while requests still wait in its queue",
        "wsgi_drain/routers/haproxy.py",
        "if (st.sessions == 0 and st.queued == 0) or deadline.expired():",
        "if st.sessions == 0 or deadline.expired():",
    ),
    Mutant(
        "the health probe's body bound raised from 64 KiB to 4 MiB",
        "wsgi_drain/health.py",
        "MAX_BODY = 64 * 1024\n",
        "MAX_BODY = 4 * 1024 * 1024\n",
    ),
    Mutant(
        "the failure policy made 'always restore'",
        "wsgi_drain/restart/policy.py",
        "    return not signalled or healthy is True\n",
        "    return True\n",
    ),
)


def unit_suite(work: Path) -> tuple[bool, str]:
    """(failed, the first failing test or the suite's last line) of tests/unit in `work`."""
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider", "tests/unit"],
        cwd=work,
        capture_output=True,
        text=True,
        check=False,
        timeout=900,
    )
    lines = done.stdout.splitlines()
    failed = [line for line in lines if line.startswith(("FAILED ", "ERROR "))]
    return done.returncode != 0, (failed[0] if failed else (lines[-1] if lines else ""))


def with_mutant(mutant: Mutant, work: Path) -> tuple[bool, str]:
    """unit_suite with `mutant` put into the copy, which is restored after."""
    target = work / mutant.path
    original = target.read_text()
    if original.count(mutant.old) != 1:
        raise SystemExit(
            f"named-mutants: {mutant.path} no longer has the line to mutate for "
            f"{mutant.name!r}: update scripts/named_mutants.py"
        )
    target.write_text(original.replace(mutant.old, mutant.new))
    try:
        return unit_suite(work)
    finally:
        target.write_text(original)


def main() -> int:
    work = Path(tempfile.mkdtemp(prefix="wsgi-drain-named-mutants-"))
    try:
        # The whole checkout (tests read the README, docs, scripts), not its git or venv.
        shutil.copytree(
            REPO, work, dirs_exist_ok=True,
            ignore=shutil.ignore_patterns(
                ".git", ".venv*", "mutants-out", "__pycache__", "*.egg-info"
            ),
        )  # fmt: skip
        where = subprocess.run(
            [sys.executable, "-c", "import wsgi_drain; print(wsgi_drain.__file__)"],
            cwd=work,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        if not where.startswith(str(work)):
            raise SystemExit(f"named-mutants: the tests would import {where}, not the copy")
        killed, why = unit_suite(work)
        if killed:
            raise SystemExit(f"named-mutants: the unit suite fails unmutated ({why}): fix it first")
        survived = 0
        for mutant in MUTANTS:
            killed, why = with_mutant(mutant, work)
            survived += not killed
            print(f"{'KILLED  ' if killed else 'SURVIVED'} {mutant.name}: {why}", flush=True)
        print(f"named-mutants: {len(MUTANTS) - survived}/{len(MUTANTS)} killed by tests/unit")
        return 1 if survived else 0
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
