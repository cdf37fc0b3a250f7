"""The whole Apache host at once: `reload` (the safe `apachectl graceful`) and `stop`.

A restart (wsgi_drain/restart/) signals one group's daemons; these runs
signal the Apache parent itself, so every group of the instance is involved.
They reuse the restart's phases for what is the same (reading the routers,
the divert with its peers, the journal, the restore and its policy) and add
only what the parent's own signals need: Apache's configuration test
(`apachectl.py`), the old generation seen and the new one awaited
(`generation.py`), and the two sequences (`reload.py`, `stop.py`).
"""
