"""Apache httpd configuration text -> frozen dataclasses (pure, no side effects).

`parse_config` reads the main configuration file and everything it includes the
way httpd 2.4 reads it at start-up, and returns what wsgi-drain needs: the
`WSGIDaemonProcess` groups with their options, ids and log settings, and the
server-wide paths (PidFile, DefaultRuntimeDir, WSGISocketPrefix, ErrorLog).

What is followed like httpd does it (server/config.c, server/core.c,
server/util.c of httpd 2.4):

* logical lines: a trailing backslash joins the next physical line (even on a
  comment line, which then swallows the next line); leading and trailing
  blanks are dropped; a line is a comment only when it *starts* with `#`;
* `${VAR}` is replaced in the whole line before it is split into words, from
  `Define`d variables first, then the environment; an undefined variable is
  left as written (httpd only warns);
* words: blanks separate them; `"..."` and `'...'` group them, where `\\"`
  (or `\\'`) and `\\\\` are the only escapes; outside quotes only `\\\\` is one;
* `Include`/`IncludeOptional` relative to ServerRoot, with wildcards per path
  component and directories read recursively, in byte order;
* `Define`, `UnDefine`, `ServerRoot` and `DefaultRuntimeDir` take effect at the
  line where they stand, as httpd executes them while reading;
* conditional sections are decided while reading, and a false one is skipped
  without expanding or including anything inside it: `<IfDefine>`, `<IfFile>`
  (against ServerRoot), `<IfModule>` (against the modules compiled into the
  binary and the `LoadModule` lines read so far, as core.c find_module does)
  and `<IfVersion>` (against the binary's version, mod_version's rules);
* `<Macro>` bodies are kept and expanded where `Use` stands (mod_macro), with
  `${VAR}` resolved at the `Use`;
* `-C` directives (httpd's command line) are read before the main file and
  `-c` directives after it (main.c).

What cannot be decided from the text is never guessed silently.  When a
conditional cannot be evaluated (`<IfDirective>`, `<IfSection>`, or
`<IfModule>`/`<IfVersion>` without the binary's facts) and its body could move
`WSGIDaemonProcess` directives (it defines a group, includes files, uses a
macro, defines variables, loads modules ...), every group from there on gets
`uncertain` set to the reason: its position, and so its socket id, is not
known.  Each group also records `inputs`, the files and directories read up to
its definition, so a caller can tell whether they changed after Apache read
them.

Directives that take effect per directory (inside `<Directory>`, `<Location>`,
`<Files>`, `<If>`, ...) do not change the server-level values.

The parts follow httpd's own reader: words.py (words and logical lines,
server/util.c), sections.py and includes.py (sections and includes,
server/config.c), conditions.py (conditional sections, server/core.c and
mod_version), macros.py (mod_macro), server.py (what is recorded and the
merging done once everything is read), reader.py (the reading pass that runs
them), model.py (the frozen dataclasses returned), envvars.py (Debian's
envvars script, read without running it).
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

from wsgi_drain.apacheconf.envvars import load_envvars
from wsgi_drain.apacheconf.model import (
    DEFAULT_GRACEFUL_TIMEOUT,
    DEFAULT_LOG_LEVEL,
    DEFAULT_PROCESSES,
    DEFAULT_SHUTDOWN_TIMEOUT,
    DEFAULT_THREADS,
    ApacheConfig,
    DaemonGroup,
    HttpdFacts,
    effective_module_level,
)
from wsgi_drain.apacheconf.reader import Reader

__all__ = [
    "DEFAULT_GRACEFUL_TIMEOUT",
    "DEFAULT_LOG_LEVEL",
    "DEFAULT_PROCESSES",
    "DEFAULT_SHUTDOWN_TIMEOUT",
    "DEFAULT_THREADS",
    "ApacheConfig",
    "DaemonGroup",
    "HttpdFacts",
    "effective_module_level",
    "load_envvars",
    "parse_config",
]


def parse_config(
    path: Path,
    *,
    server_root: Path | None = None,
    environ: Mapping[str, str] | None = None,
    defines: Iterable[str] = (),
    before: Sequence[str] = (),
    after: Sequence[str] = (),
    facts: HttpdFacts | None = None,
) -> ApacheConfig:
    """Read the Apache configuration rooted at `path`, following its includes.

    `server_root` is the running httpd's `-d`; a ServerRoot directive replaces
    it from where it stands; without either, the directory of `path`.
    `environ` is what `${VAR}` falls back to after Define'd variables (httpd
    uses its own process environment); default os.environ.  `defines` are the
    `-D` names of httpd's command line, for `<IfDefine>`; `before` and `after`
    its `-C` and `-c` directives.  `facts` tells the compiled-in modules and
    the version, for `<IfModule>` and `<IfVersion>`; without it those are
    undecidable (see the package docstring above).

    Raises ApacheConfigError, naming file and line, when a file cannot be read,
    a non-optional Include matches nothing, includes recurse, sections do not
    match up, or a WSGIDaemonProcess is invalid or duplicates a group name.
    """
    reader = Reader(
        server_root=server_root if server_root is not None else path.parent,
        environ=os.environ if environ is None else environ,
        defines=defines,
        facts=facts,
    )
    reader.read_command_line(before, "-C")
    reader.read_main(path)
    reader.read_command_line(after, "-c")
    return reader.result(path)
