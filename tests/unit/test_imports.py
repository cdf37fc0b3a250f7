"""Every module imports on the Python running the tests (3.9 to 3.13).

The older Pythons run only the unit suite; this makes sure that covers every
module's import-time code (annotations, dataclasses, enums), not only the
ones a unit test happens to use.
"""

from __future__ import annotations

import importlib
import pkgutil

import wsgi_drain


def test_every_module_imports_on_this_python() -> None:
    found = pkgutil.walk_packages(wsgi_drain.__path__, "wsgi_drain.")
    # __main__ runs the command line when imported.
    names = [m.name for m in found if not m.name.endswith("__main__")]
    assert "wsgi_drain.restart" in names and "wsgi_drain.routers.nginx" in names
    for name in names:
        importlib.import_module(name)
