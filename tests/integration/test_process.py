"""Process life: forked and multiprocessing children keep recording and exporting.

Each case is a real app in a subprocess, exporting OTLP/HTTP to the receiver of
``test_bootstrap``, with a batch delay of a minute so that only the flushes at process exit
can deliver: a child whose telemetry would be lost at exit shows up as missing spans.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
)

from llmmeter.testing import FakeOpenAI

from .test_bootstrap import Collector, _attributes, collector  # noqa: F401  (OTLP receiver)

COMMON = """
import logging, os, sys
logging.basicConfig(level=logging.WARNING, stream=sys.stderr,
                    format="%(levelname)s %(name)s %(message)s")
import llmmeter, openai

def call(i):
    client = openai.OpenAI(base_url=os.environ["FAKE_BASE_URL"], api_key="sk-test",
                           max_retries=0)
    with llmmeter.task(f"pid-{os.getpid()}"):
        client.chat.completions.create(
            model="gpt-4o-mini", messages=[{"role": "user", "content": f"Say hello {i}"}]
        )
    return os.getpid()
"""


def _launch(
    tmp_path: Path, fake: FakeOpenAI, port: int, body: str, **env: str
) -> subprocess.CompletedProcess[str]:
    """Runs ``COMMON + body`` as a script file (spawned children re-import it); the batch
    delay keeps every span in memory until a flush."""
    script = tmp_path / "app.py"
    script.write_text(COMMON + textwrap.dedent(body))
    full = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "FAKE_BASE_URL": fake.base_url,
        "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{port}",
        "OTEL_BSP_SCHEDULE_DELAY": "60000",
        "OTEL_METRIC_EXPORT_INTERVAL": "60000",
        **env,
    }
    done = subprocess.run(
        [sys.executable, str(script)],
        capture_output=True,
        text=True,
        timeout=120,
        env=full,
        cwd=tmp_path,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return done


def _run(tmp_path: Path, fake: FakeOpenAI, port: int, body: str) -> str:
    """:func:`_launch`, which must log nothing; its stdout."""
    done = _launch(tmp_path, fake, port, body)
    assert done.stderr == "", done.stderr
    return done.stdout


def _tasks(received: Collector) -> list[str]:
    return sorted(_attributes(span.attributes)["llmmeter.task"] for _, span in received.spans())


def _cost_points(received: Collector) -> dict[str, float]:
    """The last ``llmmeter.cost.usd`` value received per ``llmmeter.task``."""
    values: dict[str, float] = {}
    for request in received.received:
        if not request.path.endswith("metrics"):
            continue
        message = ExportMetricsServiceRequest.FromString(request.body)
        for resource_metrics in message.resource_metrics:
            for scope in resource_metrics.scope_metrics:
                for metric in scope.metrics:
                    if metric.name == "llmmeter.cost.usd":
                        for point in metric.sum.data_points:
                            task = _attributes(point.attributes).get("llmmeter.task")
                            values[str(task)] = point.as_double
    return values


def test_a_forked_child_records_and_exports_its_own_calls(
    tmp_path: Path,
    fake: FakeOpenAI,
    collector: Collector,  # noqa: F811
) -> None:
    out = _run(
        tmp_path,
        fake,
        collector.port,
        """
        llmmeter.instrument()
        call(0)
        child = os.fork()
        if child == 0:
            call(1)
            sys.exit(0)  # a normal exit: the providers' own flush at exit runs
        os.waitpid(child, 0)
        call(2)
        print(os.getpid(), child)
        """,
    )
    parent, child = out.split()
    assert _tasks(collector) == sorted([f"pid-{parent}", f"pid-{child}", f"pid-{parent}"])
    costs = _cost_points(collector)
    assert costs[f"pid-{child}"] > 0 and costs[f"pid-{parent}"] > costs[f"pid-{child}"]
    instances = {
        pid: {r["service.instance.id"] for r, s in collector.spans() if _task(s) == f"pid-{pid}"}
        for pid in (parent, child)
    }
    assert len(instances[parent]) == len(instances[child]) == 1
    if _sdk_renews_instance_id_at_fork():
        # The child's counters are its own series, not a clobbering copy of the parent's.
        assert instances[parent] != instances[child]


def _task(span: Any) -> str:
    return str(_attributes(span.attributes)["llmmeter.task"])


def _sdk_renews_instance_id_at_fork() -> bool:
    from opentelemetry.sdk import resources

    return hasattr(resources, "ServiceInstanceIdResourceDetector")


@pytest.mark.parametrize(
    ("method", "where"),
    [
        (method, where)
        for method in ("fork", "forkserver", "spawn")
        for where in ("top", "after-import", "child")
        if (method, where) != ("forkserver", "child")  # the same path as spawn's child
    ],
)
def test_multiprocessing_workers_export_what_they_recorded_before_they_exit(
    tmp_path: Path,
    fake: FakeOpenAI,
    collector: Collector,  # noqa: F811
    method: str,
    where: str,
) -> None:
    """fork and forkserver children end with ``os._exit`` (no atexit): without llmmeter's
    flush at child exit, everything they recorded within the batch delay would be lost.
    ``where``: instrument() at the top of the script after ``import multiprocessing``,
    before it, or only inside each child."""
    instrument_top = {
        "top": "import multiprocessing\nllmmeter.instrument()\n",
        "after-import": "llmmeter.instrument()\nimport multiprocessing\n",
        "child": "import multiprocessing\n",
    }[where]
    out = _run(
        tmp_path,
        fake,
        collector.port,
        f"""
{instrument_top}
instrumented = []

def work(i):
    if {where == "child"!r} and not instrumented:
        llmmeter.instrument()  # once per child process
        instrumented.append(True)
    return call(i)

if __name__ == "__main__":
    context = multiprocessing.get_context({method!r})
    pool = context.Pool(2)
    pids = sorted(set(pool.map(work, range(6), chunksize=1)))
    pool.close()
    pool.join()
    process = context.Process(target=work, args=(99,))
    process.start()
    process.join()
    print(" ".join(str(p) for p in pids), process.pid)
""",
    )
    *workers, single = out.split()
    tasks = _tasks(collector)
    assert len(tasks) == 7, tasks
    assert set(tasks) <= {f"pid-{p}" for p in [*workers, single]}
    assert tasks.count(f"pid-{single}") == 1
    costs = _cost_points(collector)
    assert set(costs) == set(tasks), "every child's metrics were flushed at its exit"


def test_a_child_ends_promptly_when_the_collector_is_unreachable(
    tmp_path: Path, fake: FakeOpenAI
) -> None:
    """The flush at child exit is bounded: a dead collector costs the child at most the
    exporter's timeout, never a hang (the subprocess timeout is the hang detector)."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    done = _launch(
        tmp_path,
        fake,
        port,
        """
        import multiprocessing
        llmmeter.instrument()
        if __name__ == "__main__":
            process = multiprocessing.get_context("fork").Process(target=call, args=(1,))
            process.start()
            process.join()
            print("EXIT", process.exitcode)
        """,
        OTEL_EXPORTER_OTLP_TIMEOUT="1",
    )
    assert "EXIT 0" in done.stdout
    assert "exporting spans to" in done.stderr  # the outage is reported, not raised


def test_interpreter_exit_delivers_every_span_still_queued(
    tmp_path: Path,
    fake: FakeOpenAI,
    collector: Collector,  # noqa: F811
) -> None:
    """1500 spans wait in the batch queue (nothing is exported before exit): the flush at
    exit sends them all, in batches, within the exporter's timeout."""
    _run(
        tmp_path,
        fake,
        collector.port,
        """
        llmmeter.instrument()
        client = openai.OpenAI(base_url=os.environ["FAKE_BASE_URL"], api_key="sk-test")
        for i in range(1500):
            client.embeddings.create(model="text-embedding-3-small", input=f"text {i}")
        """,
    )
    names = [span.name for _, span in collector.spans()]
    assert len(names) == 1500
    assert set(names) == {"embeddings text-embedding-3-small"}
    assert sum(r.path.endswith("traces") for r in collector.received) >= 3  # batches of 512


def test_a_forked_child_watches_the_policy_file_with_a_thread_of_its_own(tmp_path: Path) -> None:
    """The parent's watcher thread does not survive the fork: the child's first call starts
    another, which reloads a file the child changes. (No exporter: this is about the file.)"""
    policy = tmp_path / "policy.toml"
    policy.write_text('[[rules]]\nname = "old"\nfrom = "gpt-4o"\nto = "gpt-4o-mini"\n')
    script = tmp_path / "watch.py"
    script.write_text(
        textwrap.dedent(
            """
            import os, sys, threading, time
            from llmmeter import RulePolicy
            from llmmeter._policy import CallView

            CALL = CallView(endpoint="chat", operation="chat", model="gpt-4o", kwargs={})
            policy = RulePolicy.load(sys.argv[1], reload_interval=0)
            policy.decide(CALL)  # starts the watcher
            parent_thread = policy._watcher._thread
            child = os.fork()
            if child == 0:
                status = 1
                try:
                    policy.decide(CALL)  # the child's first call: a watcher of its own
                    assert policy._watcher._thread is not parent_thread
                    assert policy._watcher._thread in threading.enumerate()
                    with open(sys.argv[1] + ".new", "w") as new:
                        new.write('[[rules]]\\nname = "new"\\nfrom = "gpt-4o"\\nto = "x"\\n')
                    os.replace(sys.argv[1] + ".new", sys.argv[1])
                    end = time.monotonic() + 60
                    while policy.decide(CALL).rule != "new":
                        assert time.monotonic() < end, "the child's watcher never reloaded"
                        time.sleep(0.02)
                    status = 0
                finally:
                    os._exit(status)
            _, code = os.waitpid(child, 0)
            print(os.waitstatus_to_exitcode(code))
            """
        )
    )
    done = subprocess.run(
        [sys.executable, "-W", "ignore::DeprecationWarning", str(script), str(policy)],
        capture_output=True,
        text=True,
        timeout=120,
        env={"PATH": os.environ.get("PATH", "/usr/bin:/bin")},
        check=False,
    )
    assert (done.returncode, done.stdout.strip()) == (0, "0"), done.stderr
