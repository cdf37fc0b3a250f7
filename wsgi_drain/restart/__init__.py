"""The restart: a package of phases (DESIGN.md "Restart, phase by phase", "Layout").

`sequence.py` is the phase list; each phase or mode is a module of its own
and the records passed between them are in `records.py`.  The one failure
policy is `policy.py`.  See docs/architecture.md.
"""

from __future__ import annotations

from wsgi_drain.restart.sequence import restart

__all__ = ["restart"]
