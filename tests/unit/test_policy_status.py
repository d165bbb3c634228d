"""``llmmeter policy status`` and ``llmmeter policy promote``: the fleet's evidence per rule,
and the file edit that acts on it. Unit tests answer Prometheus's /api/v1/query from a local
stand-in; the end-to-end test runs the real ``prometheus`` scraping an instrumented process."""

from __future__ import annotations

import fcntl
import json
import os
import re
import stat
import threading
import urllib.parse
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

import pytest

from llmmeter._cli import main, policy_edit
from llmmeter._cli.common import UsageError
from llmmeter._cli.evidence import proportion, wilson
from llmmeter._cli.policy_edit import EditError, edit_policy, write_atomically
from llmmeter._cli.recommend import Recommendation, Thresholds, next_step, recommend
from llmmeter._cli.status_sources import (
    AGREEMENT,
    EVALUATION_COST,
    EVALUATION_DROPPED,
    EVALUATION_ERRORS,
    EVALUATIONS,
    FALLBACKS,
    ROUTED,
    SAVED,
    SHADOWED,
    WOULD_SAVE,
    Counter,
    promql,
)
from llmmeter._rules import RulePolicy
from tests.cli_runner import run_cli
from tests.local_http import QuietHTTPServer
from tests.prometheus import free_port

POLICY = """\
# Routing for the support fleet.
mode = "shadow"             # every rule shadows unless it says otherwise

[[rules]]
name = "classify-to-mini"   # the classifier
from = ["gpt-4o", "gpt-4o-2024-*"]
to = "gpt-4o-mini"
tasks = ["classify"]

# The canary: enforced for a slice.
[[rules]]
name = "support-canary"
from = "gpt-4o"
to = "gpt-4.1-mini"
mode = "enforce"
sample = 0.25  # raised by hand on Monday

[[rules]]
name = "long-reports"
from = "gpt-4.1"
to = "gpt-4.1-mini"
"""


class StubPrometheus:
    """/api/v1/query: the value set for a query, else an empty vector (no series)."""

    def __init__(self) -> None:
        self.values: dict[str, float] = {}
        self.queries: list[str] = []
        self.authorization: list[str | None] = []
        stub = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                url = urllib.parse.urlsplit(self.path)
                (query,) = urllib.parse.parse_qs(url.query)["query"]
                stub.queries.append(query)
                stub.authorization.append(self.headers.get("Authorization"))
                value = stub.values.get(query)
                result = [] if value is None else [{"metric": {}, "value": [1.0, str(value)]}]
                body = {"status": "success", "data": {"resultType": "vector", "result": result}}
                data = json.dumps(body).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = QuietHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def set(self, rule: str, window: str = "1h", **figures: float) -> None:
        """Figures by counter name (routed=..., evaluations=...) for ``rule``."""
        for name, value in figures.items():
            self.values[promql(COUNTERS_BY_NAME[name], rule, window)] = value

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


COUNTERS_BY_NAME: dict[str, Counter] = {
    "routed": ROUTED,
    "shadowed": SHADOWED,
    "fallbacks": FALLBACKS,
    "evaluations": EVALUATIONS,
    "agreement": AGREEMENT,
    "errors": EVALUATION_ERRORS,
    "dropped": EVALUATION_DROPPED,
    "saved": SAVED,
    "would_save": WOULD_SAVE,
    "evaluation_cost": EVALUATION_COST,
}


@pytest.fixture
def prometheus() -> Iterator[StubPrometheus]:
    stub = StubPrometheus()
    yield stub
    stub.close()


@pytest.fixture
def policy(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("LLMMETER_PROMETHEUS_URL", raising=False)
    monkeypatch.delenv("LLMMETER_POLICY", raising=False)
    path = tmp_path / "policy.toml"
    path.write_text(POLICY)
    return path


def fleet(stub: StubPrometheus) -> None:
    """classify-to-mini is ready for enforce, the canary is failing over, long-reports idles."""
    stub.set("classify-to-mini", shadowed=5000, evaluations=400, agreement=392, would_save=12.5)
    stub.set(
        "support-canary",
        routed=200,
        shadowed=0,
        fallbacks=30,
        evaluations=150,
        agreement=147,
        saved=1.25,
        errors=2,
        evaluation_cost=0.04,
    )


# --- the recommendation -----------------------------------------------------------------


def figures(**values: float) -> dict[Counter, float]:
    found = dict.fromkeys(COUNTERS_BY_NAME.values(), 0.0)
    found.update({COUNTERS_BY_NAME[name]: value for name, value in values.items()})
    return found


def advise(mode: str, sample: float, n: int, agreed: float, **values: float) -> Recommendation:
    return recommend(
        mode,
        sample,
        figures(**values),
        agreement=proportion(agreed, n),
        target=0.95,
        evaluate=0.1,
        thresholds=Thresholds(),
    )


@pytest.mark.parametrize(
    ("mode", "sample", "n", "agreed", "values", "action", "to"),
    [
        # shadow: enough evaluations and a lower bound over the target -> canary
        ("shadow", 1.0, 400, 392, {"shadowed": 900}, "promote", ("enforce", 0.05)),
        # shadow with its own sample keeps that sample as the canary
        ("shadow", 0.1, 400, 392, {"shadowed": 900}, "promote", ("enforce", 0.1)),
        # too few evaluations, however good
        ("shadow", 1.0, 50, 50, {"shadowed": 900}, "keep", (None, None)),
        # enough, but the lower bound misses the target (point 96%, bound ~93%)
        ("shadow", 1.0, 200, 192, {"shadowed": 900}, "keep", (None, None)),
        # enforce canary, good agreement, few fallbacks: next step
        ("enforce", 0.05, 400, 392, {"routed": 100, "fallbacks": 2}, "promote", ("enforce", 0.25)),
        ("enforce", 0.5, 400, 392, {"routed": 100}, "promote", ("enforce", 1.0)),
        # fully enforced: nothing left to do
        ("enforce", 1.0, 400, 392, {"routed": 100}, "keep", (None, None)),
        # too many fallbacks: back to shadow, sample kept
        ("enforce", 0.25, 400, 392, {"routed": 100, "fallbacks": 6}, "demote", ("shadow", 0.25)),
        # point agreement under the target on enough evaluations
        ("enforce", 1.0, 200, 180, {"routed": 100}, "demote", ("shadow", 1.0)),
        # few evaluations, but even the upper bound is under the target
        ("enforce", 0.05, 20, 10, {"routed": 100}, "demote", ("shadow", 0.05)),
        # no routed call at the canary yet: no fallback rate to judge
        ("enforce", 0.05, 400, 392, {}, "keep", (None, None)),
        ("shadow", 1.0, 0, 0, {}, "no_data", (None, None)),
        ("off", 1.0, 400, 392, {"shadowed": 10}, "off", (None, None)),
    ],
)
def test_recommendation_follows_the_evidence(
    mode: str,
    sample: float,
    n: int,
    agreed: float,
    values: dict[str, float],
    action: str,
    to: tuple[str | None, float | None],
) -> None:
    step = advise(mode, sample, n, agreed, **values)
    assert (step.action, step.mode, step.sample) == (action, *to), step.reason


def test_a_rule_that_evaluates_nothing_is_told_to_set_evaluate() -> None:
    step = recommend(
        "shadow",
        1.0,
        figures(shadowed=10),
        agreement=proportion(0, 0),
        target=0.95,
        evaluate=0.0,
        thresholds=Thresholds(),
    )
    assert step.action == "keep"
    assert step.reason == (
        "keep shadowing: no evaluations: the rule evaluates no calls (set evaluate, such as 0.05)"
    )


def test_steps_go_up_one_at_a_time() -> None:
    steps = (0.05, 0.25, 0.5, 1.0)
    assert [next_step(s, steps) for s in (0.01, 0.05, 0.1, 0.25, 0.5, 0.9)] == [
        0.05,
        0.25,
        0.25,
        0.5,
        1.0,
        1.0,
    ]


def test_fleet_query_sums_every_process_for_one_rule() -> None:
    assert promql(EVALUATION_COST, "classify-to-mini", "24h") == (
        'sum(increase(llmmeter_cost_usd_total{llmmeter_policy_rule="classify-to-mini", '
        'llmmeter_evaluation="true", llmmeter_policy_action="evaluate"}[24h]))'
    )


# --- status -----------------------------------------------------------------------------


def test_status_shows_each_rule_and_what_to_do(
    capsys: pytest.CaptureFixture[str], prometheus: StubPrometheus, policy: Path
) -> None:
    fleet(prometheus)
    code, out, err = run_cli(
        capsys, "policy", "status", "policy.toml", "--prometheus", prometheus.url
    )
    assert (code, err) == (1, "")
    assert out == (
        f"Policy policy.toml; Prometheus {prometheus.url}, last 1h, all processes\n"
        "rule              mode     sample  calls  evaluations  agreement  lower bound  target"
        "  fallbacks  saved  would save  recommendation\n"
        "classify-to-mini  shadow   all     5,000  400          98.0%      96.1%        95.0%"
        "   -          -      $12.50      promote\n"
        "support-canary    enforce  0.25    200    150          98.0%      94.3%        95.0%"
        "   15.0%      $1.25  -           demote\n"
        "long-reports      shadow   all     0      0            -          -            95.0%"
        "   -          -      -           no data\n"
        "classify-to-mini: lower bound 96.1% >= target 95.0% (agreement 98.0% of 400 "
        "evaluations): enforce at sample 0.05\n"
        "support-canary: fallback rate 15.0% is over 5.0%\n"
        "  (2 evaluation errors; evaluation cost $0.04)\n"
        "long-reports: no calls and no evaluations in the window\n"
        "To apply: llmmeter policy promote policy.toml (add --write to write the file)\n"
    )


def test_status_json_has_the_figures_and_the_step(
    capsys: pytest.CaptureFixture[str], prometheus: StubPrometheus, policy: Path
) -> None:
    prometheus.set(
        "support-canary",
        window="24h",
        routed=200,
        fallbacks=30,
        evaluations=150,
        agreement=147,
        saved=1.25,
        errors=2,
        dropped=3,
        evaluation_cost=0.04,
    )
    code, out, _ = run_cli(
        capsys,
        "policy",
        "status",
        "policy.toml",
        "--prometheus",
        prometheus.url,
        "--window",
        "24h",
        "--rule",
        "support-canary",
        "--json",
    )
    assert code == 1
    doc = json.loads(out)
    assert doc["window"] == "24h" and doc["window_seconds"] == 86400
    assert doc["source"] == {"kind": "prometheus", "url": prometheus.url}
    assert all(query.endswith("[24h]))") for query in prometheus.queries)
    (rule,) = doc["rules"]
    assert 0.94 < rule.pop("agreement_low") < 0.98 < rule.pop("agreement_high") < 1
    assert rule == {
        "rule": "support-canary",
        "mode": "enforce",
        "sample": 0.25,
        "evaluate": 0.0,
        "agreement_target": 0.95,
        "calls": 200.0,
        "routed": 200.0,
        "shadowed": 0.0,
        "fallbacks": 30.0,
        "fallback_rate": 0.15,
        "evaluations": 150,
        "agreement": 0.98,
        "evaluation_errors": 2.0,
        "evaluations_dropped": 3.0,
        "evaluation_cost_usd": 0.04,
        "saved_usd": 1.25,
        "would_save_usd": 0.0,
        "recommendation": {
            "action": "demote",
            "reason": "fallback rate 15.0% is over 5.0%",
            "mode": "shadow",
            "sample": 0.25,
        },
    }


def test_extrapolated_counts_keep_their_share_when_n_is_rounded(
    capsys: pytest.CaptureFixture[str], prometheus: StubPrometheus, policy: Path
) -> None:
    """increase() hands back 11.447 evaluations and 9.357 agreeing (8 of 10, each stretched
    by Prometheus): the share is 81.7%, not 9.357 of the rounded 11 (85.1%)."""
    prometheus.set("classify-to-mini", shadowed=12, evaluations=11.447, agreement=9.357)
    code, out, _ = run_cli(
        capsys, "policy", "status", "policy.toml", "--prometheus", prometheus.url, "--json"
    )
    assert code == 0
    (rule,) = (each for each in json.loads(out)["rules"] if each["rule"] == "classify-to-mini")
    assert rule["evaluations"] == 11
    assert rule["agreement"] == pytest.approx(9.357 / 11.447, abs=1e-6)
    assert rule["agreement_low"] == pytest.approx(wilson(9.357 / 11.447 * 11, 11)[0], abs=1e-6)


def test_status_with_nothing_to_change_exits_0(
    capsys: pytest.CaptureFixture[str], prometheus: StubPrometheus, policy: Path
) -> None:
    prometheus.set("classify-to-mini", shadowed=100, evaluations=10, agreement=10)
    code, out, _ = run_cli(
        capsys, "policy", "status", "--prometheus", prometheus.url, "policy.toml"
    )
    assert code == 0
    assert "classify-to-mini: keep shadowing: 10 evaluations, fewer than 100" in out


def test_status_reads_the_file_and_url_from_the_environment(
    capsys: pytest.CaptureFixture[str],
    prometheus: StubPrometheus,
    policy: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("LLMMETER_POLICY", str(policy))
    monkeypatch.setenv("LLMMETER_PROMETHEUS_URL", prometheus.url)
    code, out, _ = run_cli(capsys, "policy", "status")
    assert code == 0
    assert out.startswith(f"Policy {policy}; Prometheus {prometheus.url}, last 1h")


def test_unreachable_prometheus_names_the_url_without_the_password(
    capsys: pytest.CaptureFixture[str], policy: Path
) -> None:
    port = free_port()
    code, out, err = run_cli(
        capsys,
        "policy",
        "status",
        "policy.toml",
        "--prometheus",
        f"http://ops:s3cret@127.0.0.1:{port}",
        "--timeout",
        "2",
    )
    assert (code, out) == (2, "")
    assert err.startswith(
        "llmmeter: error: cannot read the fleet's counters from Prometheus at "
        f"http://ops:***@127.0.0.1:{port}: "
    )
    assert "s3cret" not in err


def test_basic_auth_goes_to_prometheus(
    capsys: pytest.CaptureFixture[str], prometheus: StubPrometheus, policy: Path
) -> None:
    url = prometheus.url.replace("http://", "http://ops:pa%3Ass@")
    code, out, _ = run_cli(capsys, "policy", "status", "policy.toml", "--prometheus", url)
    assert code == 0
    assert f"Prometheus {url.replace('pa%3Ass', '***')}" in out
    assert set(prometheus.authorization) == {"Basic b3BzOnBhOnNz"}  # ops:pa:ss


class OddPrometheus:
    """A Prometheus gone wrong: a body too big, nested too deep, or one that never ends."""

    def __init__(self, body: bytes, *, trickle: bool = False) -> None:
        stopping = self.stopping = threading.Event()

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                if not trickle:
                    self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if not trickle:
                    self.wfile.write(body)
                    return
                self.wfile.write(b'{"status": "success", "data": ')
                while not stopping.wait(0.01):  # a byte at a time, until the client leaves
                    self.wfile.write(b" ")
                    self.wfile.flush()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = QuietHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.stopping.set()
        self.server.shutdown()
        self.server.server_close()


@pytest.mark.parametrize(
    ("body", "trickle", "says"),
    [
        (b'{"status": "success", "data": "' + b"x" * (2 << 20) + b'"}', False,
         "the answer is larger than 1 MiB"),
        (b"[" * 100_000 + b"]" * 100_000, False, "the answer is not JSON"),
        (b"", True, "the answer took longer than 0.3 s"),
    ],
)  # fmt: skip
def test_a_prometheus_answer_is_read_within_bounds(
    capsys: pytest.CaptureFixture[str], policy: Path, body: bytes, trickle: bool, says: str
) -> None:
    odd = OddPrometheus(body, trickle=trickle)
    try:
        argv = ["policy.toml", "--prometheus", odd.url, "--timeout", "0.3"]
        code, out, err = run_cli(capsys, "policy", "status", *argv)
    finally:
        odd.close()
    assert (code, out) == (2, "")
    assert err == (
        f"llmmeter: error: cannot read the fleet's counters from Prometheus at {odd.url}: {says}\n"
    )


@pytest.mark.parametrize(
    ("argv", "says"),
    [
        (["--window", "1.5h"], "argument --window: expected a duration such as 30m, 1h"),
        (["--max-fallback-rate", "5"], "argument --max-fallback-rate: expected a fraction"),
        (["--steps", "0.5,0.25"], "argument --steps: expected increasing fractions"),
        (["--rule", "nope"], "--rule nope: policy.toml has no such rule"),
        ([], "give --prometheus URL or --otlp FILE... (or set LLMMETER_PROMETHEUS_URL)"),
        (["--prometheus", "ftp://x"], "argument --prometheus: expected the http(s) base URL"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(
    capsys: pytest.CaptureFixture[str], policy: Path, argv: list[str], says: str
) -> None:
    if "--prometheus" not in argv and argv:
        argv = [*argv, "--prometheus", "http://127.0.0.1:1"]
    code, out, err = run_cli(capsys, "policy", "status", "policy.toml", *argv)
    assert (code, out) == (2, "")
    assert err.startswith(f"llmmeter: error: {says}"), err
    assert err.count("\n") == 1


# --- promote ----------------------------------------------------------------------------


def test_promote_prints_the_diff_and_writes_nothing(
    capsys: pytest.CaptureFixture[str], prometheus: StubPrometheus, policy: Path
) -> None:
    fleet(prometheus)
    code, out, err = run_cli(
        capsys, "policy", "promote", "policy.toml", "--prometheus", prometheus.url
    )
    assert (code, err) == (1, "")
    assert policy.read_text() == POLICY
    assert out == (
        f"Policy policy.toml; Prometheus {prometheus.url}, last 1h, all processes\n"
        "classify-to-mini: promote shadow (sample all) -> enforce (sample 0.05): lower bound "
        "96.1% >= target 95.0% (agreement 98.0% of 400 evaluations): enforce at sample 0.05\n"
        "support-canary: demote enforce (sample 0.25) -> shadow (sample 0.25): fallback rate "
        "15.0% is over 5.0%\n"
        "long-reports: unchanged: no calls and no evaluations in the window\n"
        "--- policy.toml\n"
        "+++ policy.toml (promoted)\n"
        "@@ -6,13 +6,15 @@\n"
        ' from = ["gpt-4o", "gpt-4o-2024-*"]\n'
        ' to = "gpt-4o-mini"\n'
        ' tasks = ["classify"]\n'
        '+mode = "enforce"\n'
        "+sample = 0.05\n"
        " \n"
        " # The canary: enforced for a slice.\n"
        " [[rules]]\n"
        ' name = "support-canary"\n'
        ' from = "gpt-4o"\n'
        ' to = "gpt-4.1-mini"\n'
        '-mode = "enforce"\n'
        '+mode = "shadow"\n'
        " sample = 0.25  # raised by hand on Monday\n"
        " \n"
        " [[rules]]\n"
        "Nothing was written; add --write to write policy.toml.\n"
    )


def test_promote_write_replaces_the_file_keeping_comments_and_permissions(
    capsys: pytest.CaptureFixture[str], prometheus: StubPrometheus, policy: Path
) -> None:
    fleet(prometheus)
    policy.chmod(0o640)
    inode = policy.stat().st_ino
    code, out, _ = run_cli(
        capsys, "policy", "promote", "policy.toml", "--prometheus", prometheus.url, "--write"
    )
    assert code == 0
    assert out.endswith("Wrote policy.toml; running processes load it at their next reload.\n")
    text = policy.read_text()
    assert stat.S_IMODE(policy.stat().st_mode) == 0o640
    assert policy.stat().st_ino != inode  # replaced by a rename, not rewritten in place
    assert [p.name for p in policy.parent.iterdir() if p.name.startswith(".")] == []
    assert "# Routing for the support fleet." in text
    assert "sample = 0.25  # raised by hand on Monday" in text
    loaded = RulePolicy.load(policy)
    modes = {rule.name: (loaded.rule_mode(rule), rule.sample) for rule in loaded.rules}
    assert modes == {
        "classify-to-mini": ("enforce", 0.05),
        "support-canary": ("shadow", 0.25),
        "long-reports": ("shadow", 1.0),
    }
    # The same evidence a second time: the canary is enforced at 0.05 with no routed calls
    # counted, and the demoted rule has nothing more to lose.
    code, out, _ = run_cli(
        capsys, "policy", "promote", "policy.toml", "--prometheus", prometheus.url, "--json"
    )
    doc = json.loads(out)
    assert (code, doc["written"], doc["diff"]) == (0, False, "")


def test_promote_raises_the_canary_and_drops_sample_at_the_last_step(
    capsys: pytest.CaptureFixture[str], prometheus: StubPrometheus, policy: Path
) -> None:
    prometheus.set("support-canary", evaluations=400, agreement=392, routed=100, fallbacks=1)
    argv = ["policy", "promote", "policy.toml", "--prometheus", prometheus.url, "--write"]
    samples = []
    for _ in range(3):
        assert run_cli(capsys, *argv)[0] == 0
        (rule,) = [r for r in RulePolicy.load(policy).rules if r.name == "support-canary"]
        samples.append(rule.sample)
    assert samples == [0.5, 1.0, 1.0]
    text = policy.read_text()
    assert "sample" not in text.split('name = "support-canary"')[1].split("[[rules]]")[0]


def test_promote_write_leaves_a_file_changed_since_it_was_read(tmp_path: Path) -> None:
    path = tmp_path / "policy.toml"
    path.write_bytes(b"edited by hand\n")
    with pytest.raises(UsageError, match=r"changed while promote ran .* nothing was written"):
        write_atomically(str(path), b"promoted\n", b"as promote read it\n")
    assert path.read_bytes() == b"edited by hand\n"
    assert [p.name for p in tmp_path.iterdir()] == ["policy.toml"]  # no temporary file left


def test_of_two_writes_at_once_the_one_that_waits_for_the_lock_writes_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The second write runs entirely while the first is between its compare and its
    rename: without a lock both compared the same bytes and both reported success."""
    path = tmp_path / "policy.toml"
    path.write_bytes(b"original\n")
    monkeypatch.setattr(policy_edit, "LOCK_WAIT", 0.2)
    second: list[str] = []

    def write_second() -> None:
        try:
            write_atomically(str(path), b"second\n", b"original\n")
            second.append("wrote")
        except UsageError as exc:
            second.append(str(exc))

    real_replace = os.replace
    first = threading.current_thread()

    def replace(source: str, target: str) -> None:
        if threading.current_thread() is first:
            thread = threading.Thread(target=write_second)
            thread.start()
            thread.join(timeout=60)
        real_replace(source, target)

    monkeypatch.setattr(os, "replace", replace)
    write_atomically(str(path), b"first\n", b"original\n")
    assert second == [
        f"{path} is locked by another process (another promote --write?); nothing was written"
    ]
    assert path.read_bytes() == b"first\n"


def test_a_write_that_gets_the_lock_after_a_rename_writes_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The second write opened the file before the first renamed its edit over it: the
    lock it then gets is on the old file, whose bytes still match; it must notice."""
    path = tmp_path / "policy.toml"
    path.write_bytes(b"original\n")
    real_flock = fcntl.flock
    calls = []

    def flock(fd: int, operation: int) -> None:
        calls.append(fd)
        if len(calls) == 1:  # the second write, about to lock: the first runs whole
            write_atomically(str(path), b"first\n", b"original\n")
        real_flock(fd, operation)

    monkeypatch.setattr(fcntl, "flock", flock)
    with pytest.raises(UsageError, match="changed while promote ran"):
        write_atomically(str(path), b"second\n", b"original\n")
    assert path.read_bytes() == b"first\n"


def test_promote_decides_on_the_bytes_it_compares_not_an_earlier_read(
    capsys: pytest.CaptureFixture[str],
    prometheus: StubPrometheus,
    policy: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Another promote writes between this one's validation and its read: the steps must be
    decided on what is then in the file, or they re-apply a change already made."""
    fleet(prometheus)
    argv = ["policy", "promote", "policy.toml", "--prometheus", prometheus.url, "--write"]
    assert run_cli(capsys, *argv)[0] == 0
    promoted = policy.read_text()
    policy.write_text(POLICY)
    real_load = RulePolicy.load

    def load_then_lose_the_race(path: Any, **options: Any) -> RulePolicy:
        loaded = real_load(path, **options)
        policy.write_text(promoted)  # the other promote, finishing right now
        return loaded

    monkeypatch.setattr(RulePolicy, "load", load_then_lose_the_race)
    code, out, err = run_cli(capsys, *argv)
    assert (code, err) == (0, "")
    assert out.endswith("Nothing to change.\n"), out
    assert policy.read_text() == promoted


def test_promote_write_while_another_holds_the_lock_is_one_error_line(
    capsys: pytest.CaptureFixture[str],
    prometheus: StubPrometheus,
    policy: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    fleet(prometheus)
    monkeypatch.setattr(policy_edit, "LOCK_WAIT", 0.0)
    with policy.open("rb") as held:
        fcntl.flock(held.fileno(), fcntl.LOCK_EX)
        code, out, err = run_cli(
            capsys, "policy", "promote", "policy.toml", "--prometheus", prometheus.url, "--write"
        )
    assert (code, out) == (2, "")
    assert err == (
        "llmmeter: error: policy.toml is locked by another process (another promote --write?); "
        "nothing was written\n"
    )
    assert policy.read_text() == POLICY


def test_promote_json_lists_the_changes(
    capsys: pytest.CaptureFixture[str], prometheus: StubPrometheus, policy: Path
) -> None:
    fleet(prometheus)
    code, out, _ = run_cli(
        capsys, "policy", "promote", "policy.toml", "--prometheus", prometheus.url, "--json"
    )
    assert code == 1
    doc = json.loads(out)
    assert [(c["rule"], c["action"], c["from"], c["to"]) for c in doc["changes"]] == [
        (
            "classify-to-mini",
            "promote",
            {"mode": "shadow", "sample": 1.0},
            {"mode": "enforce", "sample": 0.05},
        ),
        (
            "support-canary",
            "demote",
            {"mode": "enforce", "sample": 0.25},
            {"mode": "shadow", "sample": 0.25},
        ),
    ]
    assert [u["rule"] for u in doc["unchanged"]] == ["long-reports"]
    assert doc["written"] is False and doc["diff"].startswith("--- policy.toml\n")


def test_promote_edits_rules_written_as_inline_tables(
    capsys: pytest.CaptureFixture[str], prometheus: StubPrometheus, policy: Path
) -> None:
    """Refused before tomlkit: inline tables are edited in place, comments kept."""
    policy.write_text(
        'mode = "shadow"\n'
        "rules = [\n"
        '  { name = "a", from = "gpt-4o", to = "gpt-4o-mini" },  # the classifier\n'
        '  { name = "b", from = "gpt-4.1", to = "gpt-4.1-mini" },\n'
        "]\n"
    )
    prometheus.set("a", shadowed=1000, evaluations=400, agreement=400)
    code, out, err = run_cli(
        capsys, "policy", "promote", "policy.toml", "--prometheus", prometheus.url, "--write"
    )
    assert (code, err) == (0, "")
    assert out.endswith("Wrote policy.toml; running processes load it at their next reload.\n")
    assert policy.read_text() == (
        'mode = "shadow"\n'
        "rules = [\n"
        '  { name = "a", from = "gpt-4o", to = "gpt-4o-mini", mode = "enforce", sample = 0.05},'
        "  # the classifier\n"
        '  { name = "b", from = "gpt-4.1", to = "gpt-4.1-mini" },\n'
        "]\n"
    )


def test_edit_is_refused_when_it_would_change_more_than_mode_and_sample(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The check after the edit stays: a mis-edit (here, forced) is an error, not a write."""
    real_set_key = policy_edit._set_key

    def set_key_and_more(table: Any, key: str, value: Any, newline: str) -> None:
        real_set_key(table, key, value, newline)
        table["to"] = "gpt-4o"

    monkeypatch.setattr(policy_edit, "_set_key", set_key_and_more)
    text = '[[rules]]\nname = "a"\nfrom = "x"\nto = "y"\n'
    with pytest.raises(EditError, match="would change more than the rules' mode and sample"):
        edit_policy(text, {0: Recommendation("promote", "", "enforce", 0.05)})


def test_edit_keeps_comments_line_endings_and_strings_that_look_like_tables() -> None:
    # A [[rules]] header inside a multi-line string is no table: tomlkit reads it as text.
    text = "[[rules]]\nname = 'a'\nfrom = 'x'\nto = 'y'\nprompt = \"\"\"\n[[rules]]\n\"\"\"\n"
    edited = edit_policy(text, {0: Recommendation("promote", "", "enforce", 0.05)})
    assert edited == text + 'mode = "enforce"\nsample = 0.05\n'
    crlf = '[[rules]]\r\nname = "a"\r\nfrom = "x"\r\nto = "y"\r\nmode = \'shadow\' # was\r\n'
    edited = edit_policy(crlf, {0: Recommendation("promote", "", "enforce", 0.25)})
    assert edited == (
        '[[rules]]\r\nname = "a"\r\nfrom = "x"\r\nto = "y"\r\nmode = \'enforce\' # was\r\n'
        "sample = 0.25\r\n"
    )  # a literal string stays literal
    # A comment above the next table stays above it; the new keys follow this table's last.
    two = '[[rules]]\nname = "a"\nfrom = "x"\nto = "y"\n\n# b: next\n[[rules]]\nname = "b"'
    edited = edit_policy(two, {0: Recommendation("promote", "", "enforce", 0.05)})
    assert edited == (
        '[[rules]]\nname = "a"\nfrom = "x"\nto = "y"\nmode = "enforce"\nsample = 0.05\n'
        '\n# b: next\n[[rules]]\nname = "b"'
    )


# --- OTLP JSON metrics files ------------------------------------------------------------

MINUTE = 60 * 10**9
T0 = 1_760_000_000 * 10**9


def attrs(**values: Any) -> list[dict[str, Any]]:
    out = []
    for key, value in values.items():
        kind = "boolValue" if isinstance(value, bool) else "stringValue"
        out.append({"key": key.replace("__", "."), "value": {kind: value}})
    return out


def request(instance: str, name: str, points: list[tuple[int, int, float, dict[str, Any]]]) -> str:
    """One ExportMetricsServiceRequest line: a cumulative monotonic sum."""
    data_points = [
        {
            "attributes": attrs(**labels),
            "startTimeUnixNano": str(start),
            "timeUnixNano": str(when),
            "asDouble": value,
        }
        for start, when, value, labels in points
    ]
    doc = {
        "resourceMetrics": [
            {
                "resource": {"attributes": attrs(service__instance__id=instance)},
                "scopeMetrics": [
                    {
                        "scope": {"name": "llmmeter"},
                        "metrics": [
                            {
                                "name": name,
                                "unit": "{call}",
                                "sum": {
                                    "dataPoints": data_points,
                                    "aggregationTemporality": 2,
                                    "isMonotonic": True,
                                },
                            }
                        ],
                    }
                ],
            }
        ]
    }
    return json.dumps(doc)


def test_otlp_files_give_the_increase_over_the_window_per_series(
    capsys: pytest.CaptureFixture[str], policy: Path, tmp_path: Path
) -> None:
    rule = {"llmmeter__policy__rule": "classify-to-mini"}
    shadow = {**rule, "llmmeter__policy__action": "shadow"}
    lines = [
        # process a: started 3 h before the end; 100 shadowed calls before the 1 h window, 900
        # after: counts 900
        request("a", "llmmeter.policy.decisions", [(T0, T0 + 100 * MINUTE, 100, shadow)]),
        request("a", "llmmeter.policy.decisions", [(T0, T0 + 150 * MINUTE, 600, shadow)]),
        request("a", "llmmeter.policy.decisions", [(T0, T0 + 180 * MINUTE, 1000, shadow)]),
        # process b started inside the window: counts from 0
        request(
            "b", "llmmeter.policy.decisions", [(T0 + 150 * MINUTE, T0 + 170 * MINUTE, 50, shadow)]
        ),
        # process a restarted (new start time) inside the window: another series, from 0
        request("a", "llmmeter.evaluations", [(T0 + 160 * MINUTE, T0 + 175 * MINUTE, 300, rule)]),
        request("b", "llmmeter.evaluations", [(T0 + 150 * MINUTE, T0 + 170 * MINUTE, 100, rule)]),
        request(
            "a",
            "llmmeter.evaluation.agreement",
            [(T0 + 160 * MINUTE, T0 + 175 * MINUTE, 297, rule)],
        ),
        request(
            "b", "llmmeter.evaluation.agreement", [(T0 + 150 * MINUTE, T0 + 170 * MINUTE, 95, rule)]
        ),
        # an evaluation's cost: the boolean attribute reads as "true", as in Prometheus
        request(
            "a",
            "llmmeter.cost.usd",
            [
                (
                    T0 + 160 * MINUTE,
                    T0 + 175 * MINUTE,
                    0.5,
                    {**rule, "llmmeter__evaluation": True, "llmmeter__policy__action": "evaluate"},
                )
            ],
        ),
        # another rule's points are not counted
        request(
            "a",
            "llmmeter.evaluations",
            [(T0, T0 + 175 * MINUTE, 7, {"llmmeter__policy__rule": "x"})],
        ),
    ]
    (tmp_path / "metrics.json").write_text("\n".join(lines[:6]) + "\n")
    (tmp_path / "more.json").write_text("\n".join(lines[6:]) + "\n")
    code, out, err = run_cli(
        capsys,
        "policy",
        "status",
        "policy.toml",
        "--otlp",
        "metrics.json",
        "more.json",
        "--rule",
        "classify-to-mini",
        "--json",
    )
    assert err == ""
    assert code == 1
    doc = json.loads(out)
    assert doc["source"] == {
        "kind": "otlp",
        "paths": ["metrics.json", "more.json"],
        "end_unix_nano": T0 + 180 * MINUTE,
    }
    (found,) = doc["rules"]
    assert (found["shadowed"], found["evaluations"], found["agreement"]) == (950, 400, 0.98)
    assert found["evaluation_cost_usd"] == 0.5
    assert found["recommendation"]["action"] == "promote"


def test_a_file_with_no_metrics_is_refused(
    capsys: pytest.CaptureFixture[str], policy: Path, tmp_path: Path
) -> None:
    (tmp_path / "spans.json").write_text('{"resourceSpans": []}\n')
    code, _, err = run_cli(capsys, "policy", "status", "policy.toml", "--otlp", "spans.json")
    assert code == 2
    assert err == (
        "llmmeter: error: spans.json: not OTLP JSON metrics data (line 1: no resourceMetrics)\n"
    )


# --- docs/cli.md ------------------------------------------------------------------------

DOCS = Path(__file__).parents[2] / "docs" / "cli.md"


def test_docs_example_prints_what_the_page_shows(
    capsys: pytest.CaptureFixture[str], prometheus: StubPrometheus, policy: Path
) -> None:
    """The section's example runs against the stand-in fed the figures the page lists."""
    text = DOCS.read_text()
    section = text[text.index("### Status and promote") :]
    blocks = re.findall(r"```(\w+)\n(.*?)```", section, re.S)
    files = [body for kind, body in blocks if kind == "toml"]
    policy.write_text(files[0])
    shown = [(kind, body) for kind, body in blocks if kind == "shell"]
    outputs = [body for kind, body in blocks if kind == "text"]
    figures_doc = json.loads(next(body for kind, body in blocks if kind == "json"))
    for rule, values in figures_doc.items():
        prometheus.set(rule, window="24h", **values)
    for (_, command), output in zip(shown, outputs, strict=True):
        argv = (
            command.strip()
            .removeprefix("llmmeter ")
            .replace("http://prometheus:9090", prometheus.url)
        )
        code = main(argv.split())
        printed = capsys.readouterr().out.replace(prometheus.url, "http://prometheus:9090")
        assert printed == output
        assert code == 1


# --- terminal output ------------------------------------------------------------------------


def test_status_table_fits_80_columns_and_progress_stays_on_stderr(
    capsys: pytest.CaptureFixture[str],
    prometheus: StubPrometheus,
    policy: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Twelve columns split into tables that repeat the rule; progress never reaches stdout,
    so --json output parses."""
    from llmmeter._cli import progress

    fleet(prometheus)
    monkeypatch.setattr(progress, "LOG_EVERY", 0.0)  # every rule shows progress
    argv = ["policy", "status", "policy.toml", "--prometheus", prometheus.url]
    monkeypatch.setenv("COLUMNS", "80")
    code, out, err = run_cli(capsys, *argv)
    assert code == 1
    table = [line for line in out.splitlines()[1:] if ": " not in line]
    assert max(map(len, table)) <= 80
    assert sum(line.startswith("rule ") for line in table) == 2  # the key column, twice
    assert err.splitlines() == [f"llmmeter policy status: {n}/3 rules" for n in (1, 2, 3)]
    code, out, err = run_cli(capsys, *argv, "--json")
    assert [rule["rule"] for rule in json.loads(out)["rules"]] == [
        "classify-to-mini",
        "support-canary",
        "long-reports",
    ]
    assert "llmmeter policy status: 3/3 rules" in err
