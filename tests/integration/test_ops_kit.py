"""collector-config/: every file parses, and each promises what the README and docs say.

No Docker engine and no Collector, Jaeger or Grafana binary are available where the tests
run, so the Collector config, the compose file and the Grafana provisioning are checked
statically. The Prometheus config goes through the real `promtool`, and its scrape job for
the collector runs in a real Prometheus against a page shaped like the collector's.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import socket
import subprocess
import threading
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler
from pathlib import Path, PurePosixPath
from typing import Any

import pytest
import yaml

from tests.local_http import QuietHTTPServer

ROOT = Path(__file__).resolve().parents[2]
KIT = ROOT / "collector-config"
COLLECTOR = KIT / "otel-collector.yaml"
COMPOSE = KIT / "compose.yaml"
PROMETHEUS = KIT / "prometheus" / "prometheus.yml"
DATASOURCES = KIT / "grafana" / "provisioning" / "datasources" / "datasources.yml"
DASHBOARD_PROVIDERS = KIT / "grafana" / "provisioning" / "dashboards" / "dashboards.yml"
DASHBOARDS = KIT / "grafana" / "dashboards"
README = KIT / "README.md"

GRAFANA_BUILTIN_UIDS = frozenset({"-- Grafana --", "grafana", "-- Mixed --", "-- Dashboard --"})
"""Datasources every Grafana has without provisioning (annotations, mixed panels)."""


def _load(path: Path) -> Any:
    return yaml.safe_load(path.read_text())


def _yaml_files() -> list[Path]:
    return sorted(p for p in KIT.rglob("*") if p.suffix in {".yml", ".yaml"})


def _services() -> dict[str, Any]:
    services: dict[str, Any] = _load(COMPOSE)["services"]
    return services


def _mounts(service: dict[str, Any]) -> Iterator[tuple[str, str]]:
    """(source, target) of each volume, short (`src:dst[:mode]`) or long syntax."""
    for volume in service.get("volumes", []):
        if isinstance(volume, dict):
            yield volume["source"], volume["target"]
        else:
            source, target, *_ = volume.split(":")
            yield source, target


def _mounted_from(service: dict[str, Any], target: str | PurePosixPath) -> Path:
    """The file or folder of the kit that a container sees at `target`."""
    for source, mounted in _mounts(service):
        if PurePosixPath(mounted) == PurePosixPath(target):
            return (KIT / source).resolve()
    raise AssertionError(f"nothing is mounted at {target}")


def _published(service: dict[str, Any]) -> set[int]:
    """Host ports: `host_ip:published:target`, `published:target` or the long syntax."""
    ports = set()
    for spec in service.get("ports", []):
        if isinstance(spec, dict):
            ports.add(int(spec["published"]))
            continue
        parts = str(spec).split("/")[0].split(":")
        assert len(parts) >= 2, f"{spec}: a container port without a fixed host port"
        ports.add(int(parts[-2]))
    return ports


def _environment(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment", {})
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    return {key: str(value) for key, value in env.items()}


def _command_option(service: dict[str, Any], option: str) -> str:
    for arg in service["command"]:
        if arg.startswith(f"{option}="):
            return str(arg.split("=", 1)[1])
    raise AssertionError(f"{option} is not in {service['command']}")


def _targets(job: dict[str, Any]) -> list[str]:
    return [target for static in job.get("static_configs", []) for target in static["targets"]]


def _prometheus_tool(name: str) -> str:
    """The Debian `prometheus` package's binary: skipped without it locally, failed in CI."""
    path = shutil.which(name)
    if path is None:
        reason = f"{name} is not on PATH (Debian: apt-get install prometheus); CI installs it"
        if os.environ.get("CI") == "true":
            pytest.fail(reason)
        pytest.skip(reason)
    return path


def _promtool_check_config(path: Path) -> None:
    result = subprocess.run(
        [_prometheus_tool("promtool"), "check", "config", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


# -- every file ------------------------------------------------------------------------------


@pytest.mark.parametrize("path", _yaml_files(), ids=lambda p: str(p.relative_to(KIT)))
def test_every_yaml_file_parses_to_a_mapping(path: Path) -> None:
    assert isinstance(_load(path), dict)


def test_the_kit_has_the_files_the_readme_lists() -> None:
    for path in (COLLECTOR, COMPOSE, PROMETHEUS, DATASOURCES, DASHBOARD_PROVIDERS):
        assert path.is_file(), path


# -- the Collector ---------------------------------------------------------------------------


def test_collector_pipelines_are_the_promised_ones() -> None:
    service = _load(COLLECTOR)["service"]
    assert service["pipelines"] == {
        "traces": {
            "receivers": ["otlp"],
            "processors": ["memory_limiter", "batch"],
            "exporters": ["otlp/jaeger"],
        },
        "metrics": {
            "receivers": ["otlp"],
            "processors": ["memory_limiter", "batch"],
            "exporters": ["prometheus"],
        },
    }
    assert service["extensions"] == ["health_check"]


def test_collector_defines_exactly_the_components_its_pipelines_use() -> None:
    config = _load(COLLECTOR)
    pipelines = config["service"]["pipelines"].values()
    for kind in ("receivers", "processors", "exporters"):
        used = {name for pipeline in pipelines for name in pipeline[kind]}
        assert used == set(config[kind]), kind
    assert set(config["service"]["extensions"]) == set(config["extensions"])


def test_memory_limiter_runs_first_with_a_spike_margin_below_its_limit() -> None:
    config = _load(COLLECTOR)
    for name, pipeline in config["service"]["pipelines"].items():
        assert pipeline["processors"][0] == "memory_limiter", name
    limiter = config["processors"]["memory_limiter"]
    assert re.fullmatch(r"\d+(ms|s)", limiter["check_interval"])
    assert 0 < limiter["spike_limit_percentage"] < limiter["limit_percentage"] <= 100


def test_collector_listens_on_all_interfaces_and_exports_where_promised() -> None:
    """Since v0.104 the Collector listens on localhost by default: unreachable in a container."""
    config = _load(COLLECTOR)
    protocols = config["receivers"]["otlp"]["protocols"]
    assert protocols["grpc"]["endpoint"] == "0.0.0.0:4317"
    assert protocols["http"]["endpoint"] == "0.0.0.0:4318"
    jaeger = config["exporters"]["otlp/jaeger"]
    assert jaeger["endpoint"] == "jaeger:4317"
    assert jaeger["tls"]["insecure"] is True
    prometheus = config["exporters"]["prometheus"]
    assert prometheus["endpoint"] == "0.0.0.0:8889"
    assert prometheus["resource_to_telemetry_conversion"] == {"enabled": False}
    # The scope labels tell llmmeter's gen_ai_* series from another instrumentation's.
    assert prometheus.get("without_scope_info", False) is False
    assert config["extensions"]["health_check"]["endpoint"] == "0.0.0.0:13133"
    reader = config["service"]["telemetry"]["metrics"]["readers"][0]["pull"]["exporter"]
    assert reader["prometheus"]["host"] == "0.0.0.0"


def test_scale_out_stays_in_comments() -> None:
    """The loadbalancing exporter is documented for a gateway tier, not run on a laptop."""
    text = COLLECTOR.read_text()
    assert "routing_key: traceID" in text
    assert "loadbalancing" not in json.dumps(_load(COLLECTOR))


# -- compose ---------------------------------------------------------------------------------


def test_compose_starts_the_four_services_with_pinned_images() -> None:
    images = {name: service["image"] for name, service in _services().items()}
    assert {name: image.rpartition(":")[0] for name, image in images.items()} == {
        "otel-collector": "otel/opentelemetry-collector-contrib",
        "jaeger": "jaegertracing/all-in-one",
        "prometheus": "prom/prometheus",
        "grafana": "grafana/grafana",
    }
    for name, image in images.items():
        tag = image.rpartition(":")[2]
        assert tag != "latest" and re.search(r"\d", tag), f"{name}: {image} is not pinned"


def test_the_collector_labels_series_with_their_instrumentation_scope() -> None:
    """The dashboard and the rules select gen_ai_* series by otel_scope_name. The contrib
    prometheus exporter of 0.114.0 added no scope labels; 0.141.0's release notes add
    `without_scope_info` (default false) to turn them off, so it has them."""
    image = _services()["otel-collector"]["image"]
    version = tuple(int(part) for part in image.rpartition(":")[2].split("."))
    assert version >= (0, 141, 0), image


def test_compose_bind_mounts_exist_in_the_kit_and_named_volumes_are_declared() -> None:
    compose = _load(COMPOSE)
    declared = set(compose.get("volumes") or {})
    for name, service in compose["services"].items():
        for source, _ in _mounts(service):
            if source.startswith("."):
                path = (KIT / source).resolve()
                assert path.exists(), f"{name}: {source} does not exist"
                assert path.is_relative_to(KIT), f"{name}: {source} is outside collector-config"
            else:
                assert not source.startswith("/"), f"{name}: {source} depends on the host"
                assert source in declared, f"{name}: volume {source} is not declared"


def test_compose_mounts_each_config_where_its_program_reads_it() -> None:
    services = _services()
    collector = services["otel-collector"]
    assert _mounted_from(collector, _command_option(collector, "--config")) == COLLECTOR

    prometheus = services["prometheus"]
    config = PurePosixPath(_command_option(prometheus, "--config.file"))
    assert _mounted_from(prometheus, config) == PROMETHEUS
    assert _mounted_from(prometheus, config.parent / "rules") == KIT / "prometheus" / "rules"
    assert "--web.enable-lifecycle" in prometheus["command"]

    grafana = services["grafana"]
    provisioning = KIT / "grafana" / "provisioning"
    assert _mounted_from(grafana, "/etc/grafana/provisioning") == provisioning
    (provider,) = _load(DASHBOARD_PROVIDERS)["providers"]
    assert provider["type"] == "file"
    assert _mounted_from(grafana, provider["options"]["path"]) == DASHBOARDS


def test_compose_publishes_otlp_and_the_uis() -> None:
    services = _services()
    assert {4317, 4318} <= _published(services["otel-collector"])
    assert 16686 in _published(services["jaeger"])
    assert 9090 in _published(services["prometheus"])
    assert 3000 in _published(services["grafana"])


def test_jaeger_accepts_otlp() -> None:
    assert _environment(_services()["jaeger"])["COLLECTOR_OTLP_ENABLED"] == "true"


def test_every_address_between_containers_names_a_compose_service() -> None:
    services = _services()
    collector = _load(COLLECTOR)
    scrape_targets = [t for job in _load(PROMETHEUS)["scrape_configs"] for t in _targets(job)]
    urls = [source["url"] for source in _load(DATASOURCES)["datasources"]]
    addresses = [
        collector["exporters"]["otlp/jaeger"]["endpoint"],
        *scrape_targets,
        *(urllib.parse.urlsplit(url).netloc for url in urls),
    ]
    for address in addresses:
        host = address.rsplit(":", 1)[0]
        assert host in services or host == "localhost", address


# -- Prometheus ------------------------------------------------------------------------------


def test_prometheus_scrapes_the_collector_where_it_exposes_metrics() -> None:
    prometheus = _load(PROMETHEUS)
    collector = _load(COLLECTOR)
    assert prometheus["global"] == {"scrape_interval": "15s", "evaluation_interval": "15s"}
    assert prometheus["rule_files"] == ["rules/*.yml"]
    jobs = {job["job_name"]: job for job in prometheus["scrape_configs"]}
    exporter_port = collector["exporters"]["prometheus"]["endpoint"].rsplit(":", 1)[1]
    assert _targets(jobs["llmmeter"]) == [f"otel-collector:{exporter_port}"]
    # The exporter's job/instance labels name the app (service.name, service.instance.id).
    assert jobs["llmmeter"]["honor_labels"] is True
    reader = collector["service"]["telemetry"]["metrics"]["readers"][0]["pull"]["exporter"]
    assert _targets(jobs["otel-collector"]) == [f"otel-collector:{reader['prometheus']['port']}"]
    assert _targets(jobs["prometheus"]) == ["localhost:9090"]


def test_promtool_accepts_the_prometheus_config() -> None:
    _promtool_check_config(PROMETHEUS)


def test_the_commented_direct_scrape_example_is_a_valid_job(tmp_path: Path) -> None:
    """Uncommenting the example gives a config promtool accepts, scraping llmmeter's port."""
    text = PROMETHEUS.read_text()
    example = re.search(
        r"^ *# example: scrape an app directly\n(.*?)^ *# end of example\n", text, re.S | re.M
    )
    assert example, "the direct-scrape example is missing"
    uncommented = re.sub(r"^( *)# ", r"\1", example[1], flags=re.M)
    config = tmp_path / "prometheus.yml"
    config.write_text(text.replace(example[1], uncommented))
    jobs = {job["job_name"]: job for job in _load(config)["scrape_configs"]}
    assert _targets(jobs["my-service"]) == ["localhost:9464"]
    _promtool_check_config(config)


COLLECTOR_PAGE = b"""\
# TYPE llmmeter_cost_usd_total counter
llmmeter_cost_usd_total{job="shop/checkout",instance="a1",gen_ai_request_model="gpt-4o",\
otel_scope_name="llmmeter",otel_scope_version="0.1.0",otel_scope_schema_url=""} 1.5
llmmeter_cost_usd_total{job="search",gen_ai_request_model="gpt-4o-mini",\
otel_scope_name="llmmeter",otel_scope_version="0.1.0",otel_scope_schema_url=""} 0.25
# TYPE target_info gauge
target_info{job="shop/checkout",instance="a1",host_name="h1"} 1
target_info{job="search",host_name="h2"} 1
"""
"""What the collector's prometheus exporter serves for two apps: service.namespace/name in
`job`, service.instance.id in `instance` (absent when the app set none), and neither on
target_info; the instrumentation scope in otel_scope_* labels on every series but
target_info."""


@contextlib.contextmanager
def _serve(body: bytes) -> Iterator[str]:
    """`body` at every path of a local HTTP server; yields its host:port."""

    class Page(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "text/plain; version=0.0.4")
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = QuietHTTPServer(("127.0.0.1", 0), Page)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


@contextlib.contextmanager
def _prometheus(config: dict[str, Any], workdir: Path) -> Iterator[str]:
    """A real Prometheus with `config`; yields its base URL."""
    binary = _prometheus_tool("prometheus")
    (workdir / "prometheus.yml").write_text(yaml.safe_dump(config))
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with (workdir / "prometheus.log").open("wb") as log:
        process = subprocess.Popen(
            [
                binary,
                f"--config.file={workdir / 'prometheus.yml'}",
                f"--storage.tsdb.path={workdir / 'data'}",
                f"--web.listen-address=127.0.0.1:{port}",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        process.terminate()
        process.wait(timeout=30)


def _query_until(base: str, promql: str, count: int) -> list[dict[str, Any]]:
    """The query's result once it has `count` series (or what it has after 60 s)."""
    url = f"{base}/api/v1/query?{urllib.parse.urlencode({'query': promql})}"
    deadline = time.monotonic() + 60
    result: list[dict[str, Any]] = []
    while len(result) < count and time.monotonic() < deadline:
        time.sleep(0.5)
        try:
            with urllib.request.urlopen(url, timeout=5) as response:
                result = json.load(response)["data"]["result"]
        except OSError:
            continue  # not listening yet
    return result


def test_the_collector_job_keeps_each_apps_labels_and_its_service_name(tmp_path: Path) -> None:
    """A real Prometheus runs this kit's scrape job against a page shaped like the
    collector's: `job` and `instance` stay the app's, and spend joins target_info by
    service_name as it does when Prometheus scrapes an app directly."""
    config = _load(PROMETHEUS)
    (job,) = [job for job in config["scrape_configs"] if job["job_name"] == "llmmeter"]
    with _serve(COLLECTOR_PAGE) as page:
        job["static_configs"] = [{"targets": [page]}]
        job["scrape_interval"] = "1s"
        config.update(scrape_configs=[job], rule_files=[])
        with _prometheus(config, tmp_path) as base:
            spend = _query_until(
                base,
                "sum by (job, service_name) (llmmeter_cost_usd_total"
                " * on (job, instance) group_left (service_name) target_info)",
                count=2,
            )
            series = _query_until(base, "llmmeter_cost_usd_total", count=2)
    log = (tmp_path / "prometheus.log").read_text()
    assert {(r["metric"]["job"], r["metric"]["service_name"], r["value"][1]) for r in spend} == {
        ("shop/checkout", "checkout", "1.5"),
        ("search", "search", "0.25"),
    }, log
    assert {r["metric"]["instance"] for r in series} == {"a1", page}
    assert {r["metric"]["otel_scope_name"] for r in series} == {"llmmeter"}


# -- Grafana ---------------------------------------------------------------------------------


def _provisioned() -> dict[str, dict[str, Any]]:
    return {source["uid"]: source for source in _load(DATASOURCES)["datasources"]}


def test_grafana_provisions_prometheus_and_jaeger_with_fixed_uids() -> None:
    provisioned = _provisioned()
    assert {uid: (ds["type"], ds["url"]) for uid, ds in provisioned.items()} == {
        "prometheus": ("prometheus", "http://prometheus:9090"),
        "jaeger": ("jaeger", "http://jaeger:16686"),
    }
    assert [uid for uid, ds in provisioned.items() if ds.get("isDefault")] == ["prometheus"]
    scrape_interval = _load(PROMETHEUS)["global"]["scrape_interval"]
    assert provisioned["prometheus"]["jsonData"]["timeInterval"] == scrape_interval


def _panels(panels: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    for panel in panels:
        yield panel
        yield from _panels(panel.get("panels", []))  # a collapsed row holds its panels


def _datasource_problems(dashboard: dict[str, Any], provisioned: dict[str, str]) -> list[str]:
    """Each datasource reference that names neither a provisioned uid (whose type matches)
    nor a datasource variable over a provisioned type; `provisioned` maps uid to type."""
    variables = {v["name"]: v for v in dashboard.get("templating", {}).get("list", [])}

    def problem(where: str, ref: Any, builtin_ok: bool) -> str | None:
        if ref is None:
            return None  # inherits the panel's, or the default datasource
        uid, kind = (ref, None) if isinstance(ref, str) else (ref.get("uid"), ref.get("type"))
        if isinstance(uid, str) and uid.startswith("$"):
            variable = variables.get(uid.strip("${}"))
            if variable is None or variable.get("type") != "datasource":
                return f"{where}: {uid} is not a datasource variable"
            if variable.get("query") not in provisioned.values():
                return f"{where}: {uid} selects {variable.get('query')!r}, not provisioned"
            return None
        if builtin_ok and uid in GRAFANA_BUILTIN_UIDS:
            return None
        if uid not in provisioned:
            return f"{where}: datasource {ref!r} is not provisioned"
        if kind is not None and kind != provisioned[uid]:
            return f"{where}: datasource {uid!r} is a {provisioned[uid]}, not {kind}"
        return None

    found = []
    for panel in _panels(dashboard.get("panels", [])):
        where = f"panel {panel.get('title', panel.get('id'))!r}"
        found.append(problem(where, panel.get("datasource"), builtin_ok=True))
        for target in panel.get("targets", []):
            found.append(
                problem(f"{where} query {target.get('refId')}", target.get("datasource"), False)
            )
    for variable in variables.values():
        if variable.get("type") == "query":
            found.append(problem(f"variable {variable['name']}", variable.get("datasource"), False))
    for annotation in dashboard.get("annotations", {}).get("list", []):
        found.append(problem("annotation", annotation.get("datasource"), builtin_ok=True))
    return [p for p in found if p is not None]


def test_dashboard_panels_use_provisioned_datasources() -> None:
    """Passes with no dashboard yet; each dashboard JSON in the kit is checked."""
    provisioned = {uid: ds["type"] for uid, ds in _provisioned().items()}
    for path in sorted(DASHBOARDS.glob("*.json")):
        dashboard = json.loads(path.read_text())
        assert dashboard.get("panels"), f"{path.name}: no panels"
        assert _datasource_problems(dashboard, provisioned) == [], path.name


def test_dashboard_datasource_check_catches_unprovisioned_references() -> None:
    provisioned = {"prometheus": "prometheus", "jaeger": "jaeger"}
    prom = {"type": "prometheus", "uid": "prometheus"}
    dashboard = {
        "templating": {"list": [{"name": "ds", "type": "datasource", "query": "prometheus"}]},
        "annotations": {"list": [{"datasource": {"type": "grafana", "uid": "-- Grafana --"}}]},
        "panels": [
            {"title": "ok", "datasource": prom, "targets": [{"refId": "A", "datasource": prom}]},
            {"title": "variable", "datasource": {"uid": "${ds}"}, "targets": [{"refId": "A"}]},
            {
                "title": "row",
                "type": "row",
                "panels": [{"title": "nested", "datasource": {"uid": "P1809F7CD0C75ACF3"}}],
            },
            {"title": "type", "datasource": {"type": "loki", "uid": "prometheus"}},
            {"title": "var", "datasource": "$nope", "targets": []},
        ],
    }
    assert _datasource_problems(dashboard, provisioned) == [
        "panel 'nested': datasource {'uid': 'P1809F7CD0C75ACF3'} is not provisioned",
        "panel 'type': datasource 'prometheus' is a prometheus, not loki",
        "panel 'var': $nope is not a datasource variable",
    ]


# -- only llmmeter's series ------------------------------------------------------------------
#
# Another OpenAI instrumentation in the same process (contrib openai-v2, genai-openai,
# OpenLLMetry, OpenLIT) records the GenAI metrics under the same names as llmmeter
# (gen_ai_client_operation_duration_seconds_*, gen_ai_client_token_usage_*, ...). Only the
# instrumentation scope, which the exporters add as the otel_scope_name label, tells the
# series apart, so every gen_ai_* selector of the dashboard and the rules names llmmeter's.

RULE_FILES = sorted((KIT / "prometheus" / "rules").glob("*.yml"))

_STRING = re.compile(r'"(?:[^"\\]|\\.)*"')
_LABEL_LIST = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^()]*\)")
_LABEL_VALUES_LABEL = re.compile(r"(\blabel_values\s*\((?:[^,(){}]|\{[^{}]*\})*,)([^()]*)")
_GEN_AI_NAME = re.compile(r"(?<![\w:])gen_ai_\w+")
_LLMMETER_SCOPE = re.compile(r'\s*otel_scope_name\s*=\s*"llmmeter"\s*')


def _gen_ai_selectors(expr: str) -> list[tuple[str, bool]]:
    """Each selector of a gen_ai_* metric in the PromQL `expr`, and whether it has the
    matcher otel_scope_name="llmmeter"."""

    def blank(match: re.Match[str]) -> str:
        return " " * len(match[0])

    # Blank what is not a metric name, keeping every offset: quoted strings (inside their
    # quotes), the label lists of by/on/ignoring/group_left, label_values()'s label argument.
    # A gen_ai_* name left outside braces is then a metric, and its matchers (if any) are
    # the braces that follow it.
    masked = _STRING.sub(lambda m: '"' + " " * (len(m[0]) - 2) + '"', expr)
    masked = _LABEL_LIST.sub(blank, masked)
    masked = _LABEL_VALUES_LABEL.sub(lambda m: m[1] + " " * len(m[2]), masked)
    found = []
    for name in _GEN_AI_NAME.finditer(masked):
        before = masked[: name.start()]
        if before.count("{") != before.count("}"):
            continue  # a label name inside another selector's braces
        start = name.end() + len(masked[name.end() :]) - len(masked[name.end() :].lstrip())
        if not masked.startswith("{", start):
            found.append((name[0], False))
            continue
        end = masked.index("}", start)
        matchers, offset = [], start + 1
        for piece in masked[start + 1 : end].split(","):  # commas in strings are blanked
            matchers.append(expr[offset : offset + len(piece)])
            offset += len(piece) + 1
        scoped = any(_LLMMETER_SCOPE.fullmatch(matcher) for matcher in matchers)
        found.append((expr[name.start() : end + 1], scoped))
    return found


def _kit_queries() -> list[tuple[str, str]]:
    """(where, PromQL) of every rule, every dashboard panel query and every query variable."""
    queries = [
        (f"{path.name}: {rule.get('alert') or rule['record']}", rule["expr"])
        for path in RULE_FILES
        for group in _load(path)["groups"]
        for rule in group["rules"]
    ]
    for path in sorted(DASHBOARDS.glob("*.json")):
        dashboard = json.loads(path.read_text())
        for panel in _panels(dashboard.get("panels", [])):
            for target in panel.get("targets", []):
                where = f"{path.name}: panel {panel.get('title')!r} [{target.get('refId')}]"
                queries.append((where, target.get("expr", "")))
        for variable in dashboard.get("templating", {}).get("list", []):
            if variable.get("type") != "query":
                continue
            query = variable.get("query")
            texts = [query.get("query", "") if isinstance(query, dict) else query or ""]
            texts.append(variable.get("definition", ""))
            queries += [(f"{path.name}: variable {variable['name']}", text) for text in texts]
    return queries


def test_every_gen_ai_selector_counts_only_llmmeters_series() -> None:
    """Every selector of a gen_ai_* metric in the rules and the dashboard (panels and
    variables) has otel_scope_name="llmmeter". llmmeter_* metrics are llmmeter's alone and
    are read without it, so that spend keeps being counted where scope labels are lost."""
    selectors = [
        (where, selector, scoped)
        for where, expr in _kit_queries()
        for selector, scoped in _gen_ai_selectors(expr)
    ]
    assert len({where for where, _, _ in selectors}) >= 10  # the check sees the kit's queries
    assert [f"{where}: {selector}" for where, selector, scoped in selectors if not scoped] == []


def test_the_scope_check_tells_metrics_from_labels_and_finds_missing_scopes() -> None:
    expr = (
        'sum by (gen_ai_request_model) (rate(gen_ai_client_token_usage_sum{gen_ai_token_type="a,'
        ' otel_scope_name=\\"llmmeter\\""}[5m]))'
        " / on (gen_ai_request_model) group_left sum(rate(gen_ai_client_token_usage_count[5m]))"
        ' / gen_ai_client_operation_duration_seconds_count{otel_scope_name="llmmeter-2",'
        ' otel_scope_version="llmmeter"}'
        ' / gen_ai_client_operation_duration_seconds_count{otel_scope_name=~"llmmeter"}'
        ' / gen_ai_client_operation_duration_seconds_count{ otel_scope_name = "llmmeter" ,'
        ' gen_ai_request_model=~"gpt-.*"}'
        ' / llmmeter_cost_usd_total{gen_ai_request_model="gen_ai_client_token_usage_sum"}'
    )
    assert [scoped for _, scoped in _gen_ai_selectors(expr)] == [False, False, False, False, True]
    ttfc = 'gen_ai_client_operation_time_to_first_chunk_seconds_bucket{otel_scope_name="llmmeter"}'
    relabelled = f'label_replace({ttfc}, "gen_ai_x", "$1", "gen_ai_request_model", "(.*)")'
    assert _gen_ai_selectors(relabelled) == [(ttfc, True)]
    count = "gen_ai_client_operation_duration_seconds_count"
    variable = f"label_values({count}, gen_ai_request_model)"
    assert _gen_ai_selectors(variable) == [(count, False)]
    scoped = f'{count}{{error_type="", otel_scope_name="llmmeter"}}'
    assert _gen_ai_selectors(f"label_values({scoped}, gen_ai_request_model)") == [(scoped, True)]


# -- README ----------------------------------------------------------------------------------


def test_readme_commands_match_the_stack() -> None:
    text = README.read_text()
    assert "docker compose -f collector-config/compose.yaml up" in text
    (port,) = re.findall(r"OTEL_EXPORTER_OTLP_ENDPOINT=http://localhost:(\d+)", text)
    assert int(port) in _published(_services()["otel-collector"])
    assert "(../docs/operations.md)" in text


def test_every_alert_runbook_points_at_a_heading_of_docs_operations() -> None:

    root = Path(__file__).resolve().parents[2]
    headings = {
        re.sub(r"[^a-z0-9 -]", "", line.lstrip("#").strip().lower()).replace(" ", "-")
        for line in (root / "docs" / "operations.md").read_text().splitlines()
        if line.startswith("#")
    }
    rules = yaml.safe_load(
        (root / "collector-config/prometheus/rules/llmmeter-alerts.yml").read_text()
    )
    alerts = [rule for group in rules["groups"] for rule in group["rules"] if "alert" in rule]
    assert alerts
    for alert in alerts:
        page, _, anchor = alert["annotations"]["runbook"].partition("#")
        assert page == "docs/operations.md", alert["alert"]
        assert anchor in headings, (alert["alert"], anchor)


# -- exemplars: from a metric point to the trace of the call behind it ------------------------


def test_exemplars_flow_from_the_collector_through_prometheus_to_jaeger() -> None:
    """llmmeter records its points in the call's span context; the exemplars reach Grafana
    only if the collector serves OpenMetrics, Prometheus stores them and the Prometheus
    datasource names where a trace id leads."""
    assert _load(COLLECTOR)["exporters"]["prometheus"]["enable_open_metrics"] is True
    features = [
        arg.split("=", 1)[1]
        for arg in _services()["prometheus"]["command"]
        if arg.startswith("--enable-feature=")
    ]
    assert "exemplar-storage" in ",".join(features).split(",")
    provisioned = _provisioned()
    destinations = provisioned["prometheus"]["jsonData"]["exemplarTraceIdDestinations"]
    assert destinations == [{"name": "trace_id", "datasourceUid": "jaeger"}]
    assert provisioned["jaeger"]["type"] == "jaeger"


EXEMPLAR_METRICS = (
    "llmmeter_cost_usd_total",
    "gen_ai_client_token_usage_",
    "gen_ai_client_operation_duration_seconds_bucket",
    "gen_ai_client_operation_time_to_first_chunk_seconds_bucket",
)


def test_time_series_panels_of_spend_tokens_and_latency_show_exemplars() -> None:
    showing = []
    for path in sorted(DASHBOARDS.glob("*.json")):
        for panel in _panels(json.loads(path.read_text()).get("panels", [])):
            if panel.get("type") != "timeseries":
                continue
            for target in panel.get("targets", []):
                expr = target.get("expr", "")
                if any(metric in expr for metric in EXEMPLAR_METRICS):
                    showing.append((panel["title"], target.get("exemplar") is True))
    assert len(showing) >= 6
    assert [title for title, shown in showing if not shown] == []


# -- both GenAI name sets (OTEL_SEMCONV_STABILITY_OPT_IN, docs/telemetry.md) ------------------

NEWEST_NAMES = {
    "gen_ai_client_operation_duration_seconds_count": (
        "gen_ai_client_inference_duration_seconds_count",
        "gen_ai_client_embeddings_duration_seconds_count",
    ),
    "gen_ai_client_operation_duration_seconds_bucket": (
        "gen_ai_client_inference_duration_seconds_bucket",
        "gen_ai_client_embeddings_duration_seconds_bucket",
    ),
    "gen_ai_client_operation_time_to_first_chunk_seconds_bucket": (
        "gen_ai_client_inference_time_to_first_chunk_seconds_bucket",
    ),
    "gen_ai_client_token_usage_count": (
        "gen_ai_client_inference_operation_input_tokens_count",
        "gen_ai_client_embeddings_operation_input_tokens_count",
    ),
    "gen_ai_client_token_usage_sum": (
        "gen_ai_client_inference_operation_input_tokens_sum",
        "gen_ai_client_inference_operation_output_tokens_sum",
        "gen_ai_client_embeddings_operation_input_tokens_sum",
    ),
    "llmmeter_usage_cache_input_tokens_total": (
        "gen_ai_client_inference_usage_cache_read_input_tokens_total",
        "gen_ai_client_inference_usage_cache_write_input_tokens_total",
    ),
}
"""Each default-name series the kit reads, and the newest names that stand for it."""


def _names_missing(expr: str) -> list[str]:
    """Default names in ``expr`` read without their newest counterparts."""
    missing = []
    for default, newest in NEWEST_NAMES.items():
        if re.search(rf"(?<![\w:]){default}\b", expr):
            missing += [f"{default} without {name}" for name in newest if name not in expr]
    return missing


def test_every_query_reads_the_default_and_the_newest_names() -> None:
    """A service opted in to the newest GenAI names keeps every panel, variable and alert:
    each query that reads a default name reads its newest counterparts too."""
    problems = [
        f"{where}: {missing}" for where, expr in _kit_queries() for missing in _names_missing(expr)
    ]
    assert problems == []
    variables = [e for where, e in _kit_queries() if "variable" in where and "gen_ai_" in e]
    assert variables
    assert all("(operation|inference|embeddings)_duration" in v for v in variables), variables


def test_the_name_check_finds_a_query_on_the_default_names_alone() -> None:
    assert _names_missing("rate(gen_ai_client_operation_duration_seconds_count[5m])") == [
        "gen_ai_client_operation_duration_seconds_count without "
        "gen_ai_client_inference_duration_seconds_count",
        "gen_ai_client_operation_duration_seconds_count without "
        "gen_ai_client_embeddings_duration_seconds_count",
    ]
    assert _names_missing("rate(llmmeter_cost_usd_total[5m])") == []
