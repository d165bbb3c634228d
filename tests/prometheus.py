"""A real Prometheus for the integration tests: find it, start it, ask it, stop it.

The binary comes from the Debian package ``prometheus``; without it a test is skipped, except
in CI (``CI=true``), where it fails.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import IO, Any

import pytest
import yaml


def find_binary(name: str) -> str:
    """The path of ``name`` (``prometheus``, ``promtool``): skipped without it, failed in CI."""
    path = shutil.which(name)
    if path is None:
        reason = f"{name} is not installed (Debian package prometheus)"
        if os.environ.get("CI") == "true":
            pytest.fail(f"{reason}; CI must install it")
        pytest.skip(reason)
    return path


def free_port() -> int:
    """A loopback port free right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def app_env() -> dict[str, str]:
    """This environment without OTEL_*, LLMMETER_* and OPENAI_*: an instrumented child
    process then gets only the settings its test gives it."""
    return {
        name: value
        for name, value in os.environ.items()
        if not name.startswith(("OTEL_", "LLMMETER_", "OPENAI_"))
    }


def scrape_config(path: Path, job: str, port: int) -> Path:
    """A Prometheus config at ``path`` that scrapes ``127.0.0.1:port`` every second as ``job``."""
    path.write_text(
        yaml.safe_dump(
            {
                "global": {"scrape_interval": "1s"},
                "scrape_configs": [
                    {"job_name": job, "static_configs": [{"targets": [f"127.0.0.1:{port}"]}]}
                ],
            }
        )
    )
    return path


def start_prometheus(
    binary: str, config: Path, data: Path, web_port: int, log: IO[str]
) -> subprocess.Popen[bytes]:
    """The real Prometheus on loopback with ``config``, logging warnings only to ``log``."""
    return subprocess.Popen(
        [
            binary,
            f"--config.file={config}",
            f"--storage.tsdb.path={data}",
            f"--web.listen-address=127.0.0.1:{web_port}",
            "--log.level=warn",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )


def stop(app: subprocess.Popen[Any], server: subprocess.Popen[Any]) -> None:
    """End a test's app (its closed stdin tells it to finish) and its Prometheus (SIGTERM);
    either still running after 15 s is killed."""
    assert app.stdin is not None
    app.stdin.close()
    server.terminate()
    for process in (app, server):
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def tail(path: Path, lines: int = 30) -> str:
    """The last ``lines`` lines of a log file, for a failure message."""
    if not path.exists():
        return ""
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])


class PrometheusAPI:
    """Prometheus's HTTP API, as the tests ask it."""

    def __init__(self, base: str) -> None:
        self.base = base

    def get(self, path: str, **params: str) -> dict[str, Any]:
        url = f"{self.base}{path}?{urllib.parse.urlencode(params)}"
        try:
            with urllib.request.urlopen(url, timeout=10) as response:
                return json.load(response)  # type: ignore[no-any-return]
        except urllib.error.HTTPError as error:  # 400/422 carry the JSON error
            with error:
                return json.load(error)  # type: ignore[no-any-return]

    def query(self, expr: str) -> dict[str, Any]:
        return self.get("/api/v1/query", query=expr)

    def series(self, expr: str) -> list[dict[str, Any]]:
        """The instant vector of expr, or an AssertionError with Prometheus's error."""
        body = self.query(expr)
        assert body["status"] == "success", f"{expr}: {body.get('error')}"
        assert body["data"]["resultType"] == "vector", expr
        return body["data"]["result"]  # type: ignore[no-any-return]

    def ready(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.base}/-/ready", timeout=2) as response:
                return response.status == 200
        except OSError:
            return False
