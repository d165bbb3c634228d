"""A local HTTP server for tests that stands in for a collector, Prometheus or a price page."""

from __future__ import annotations

from http.server import ThreadingHTTPServer
from typing import Any


class QuietHTTPServer(ThreadingHTTPServer):
    """Serves on its own daemon threads and never prints to stderr.

    A client that gives up (a timeout, an exporter shutting down) makes a handler thread
    that outlives its test fail with a broken pipe; the stock server prints that traceback
    to whatever stderr a *later* test is capturing, failing it at random.
    """

    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass
