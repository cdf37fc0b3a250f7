"""Reading mod_wsgi's daemon lifecycle lines out of Apache's error log.

Reading those lines is the only way to tell, after the fact, whether an old
process drained cleanly or was forced off with requests still running.  Its
rooms: `events.py` (the event kinds, LifecycleEvent, how a life ended:
`ending_of`), `lines.py` (the catalogue of messages, `parse_line`,
`line_time`) and `tail.py` (following a log as it grows, `ErrorLogTail`, and
`check`'s bounded look back, `recent_events`).  Other modules import from
the package; its modules import each other downward (tail -> lines ->
events), never this file.
"""

from wsgi_drain.errorlog.events import KINDS, Ending, LifecycleEvent, ending_of
from wsgi_drain.errorlog.lines import line_time, parse_line
from wsgi_drain.errorlog.tail import ErrorLogTail, recent_events

__all__ = [
    "KINDS",
    "Ending",
    "ErrorLogTail",
    "LifecycleEvent",
    "ending_of",
    "line_time",
    "parse_line",
    "recent_events",
]
