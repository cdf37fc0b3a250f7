"""wsgi-drain: lossless graceful restarts of Apache mod_wsgi daemon process groups."""

__version__ = "0.1.0"
