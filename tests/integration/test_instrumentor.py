"""instrument()/uninstrument(): idempotent, import-order independent, fully reversible."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

import pytest

import llmmeter
from llmmeter._targets import ATTEMPT_HOOK, TARGETS
from llmmeter.testing import FakeOpenAI
from tests.conftest import Telemetry, make_telemetry

CHAT = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "Say hello"}]}


def _originals(openai_module: Any) -> dict[str, Any]:
    import importlib

    found = {}
    for module, qualname in [(t.module, t.qualname) for t in TARGETS] + [ATTEMPT_HOOK]:
        try:
            cls = getattr(importlib.import_module(module), qualname.split(".")[0])
        except (ImportError, AttributeError):
            continue
        method = qualname.split(".")[1]
        found[f"{module}:{qualname}"] = (cls, method, cls.__dict__.get(method))
    return found


def test_uninstrument_restores_the_original_methods_identically(openai_module: Any) -> None:
    before = _originals(openai_module)
    tel = make_telemetry()
    tel.instrument()
    patched = [k for k, (cls, m, orig) in before.items() if cls.__dict__.get(m) is not orig]
    assert len(patched) >= 10
    llmmeter.uninstrument()
    for key, (cls, method, original) in before.items():
        assert cls.__dict__.get(method) is original, key


def test_instrument_twice_warns_and_patches_once(
    telemetry: Telemetry, client: Any, caplog: pytest.LogCaptureFixture
) -> None:
    llmmeter.instrument()
    assert "already instrumented" in caplog.text
    client.chat.completions.create(**CHAT)
    assert len(telemetry.spans()) == 1


def test_instrument_uninstrument_instrument_again_works(server: FakeOpenAI, client: Any) -> None:
    for _ in range(2):
        tel = make_telemetry()
        tel.instrument()
        client.chat.completions.create(**CHAT)
        llmmeter.uninstrument()
        assert len(tel.spans()) == 1
    client.chat.completions.create(**CHAT)


def test_uninstrument_without_instrument_is_a_no_op() -> None:
    llmmeter.uninstrument()


def test_opentelemetry_instrument_entry_point_is_registered() -> None:
    (entry,) = [e for e in entry_points(group="opentelemetry_instrumentor") if e.name == "llmmeter"]
    from llmmeter._instrumentor import LLMMeterInstrumentor

    assert entry.load() is LLMMeterInstrumentor


def run_script(script: str, timeout: float = 60) -> Any:
    """Run ``script`` in a fresh interpreter (import order matters and must be clean) and
    return the JSON it prints last."""
    # No exporter may try the network: scripts pass their own providers.
    env = {**os.environ, "OTEL_METRICS_EXPORTER": "none", "OTEL_TRACES_EXPORTER": "none"}
    done = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        env=env,
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


def _run(code: str, fake: FakeOpenAI) -> dict[str, Any]:
    return run_script(textwrap.dedent(code).replace("BASE_URL", fake.base_url))  # type: ignore[no-any-return]


SETUP = """
    import json, sys
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    MESSAGES = [{"role": "user", "content": "hi"}]
    provider.add_span_processor(SimpleSpanProcessor(exporter))
"""


def test_instrument_before_import_does_not_import_openai_and_patches_on_import(
    fake: FakeOpenAI,
) -> None:
    out = _run(
        SETUP
        + """
    import llmmeter
    llmmeter.instrument(tracer_provider=provider, strict=True)
    imported_early = "openai" in sys.modules
    import openai
    client = openai.OpenAI(base_url="BASE_URL", api_key="k")
    client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    print(json.dumps({"early": imported_early, "spans": len(exporter.get_finished_spans())}))
    """,
        fake,
    )
    assert out == {"early": False, "spans": 1}


def test_import_llmmeter_alone_does_not_import_openai(fake: FakeOpenAI) -> None:
    out = _run(
        """
    import json, sys
    import llmmeter, llmmeter.testing
    print(json.dumps({"openai": "openai" in sys.modules}))
    """,
        fake,
    )
    assert out == {"openai": False}


def test_instrument_after_import_and_after_client_creation(fake: FakeOpenAI) -> None:
    out = _run(
        SETUP
        + """
    import openai
    client = openai.OpenAI(base_url="BASE_URL", api_key="k")
    import llmmeter
    llmmeter.instrument(tracer_provider=provider, strict=True)
    client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    client.embeddings.create(model="text-embedding-3-small", input="x")
    print(json.dumps({"spans": len(exporter.get_finished_spans())}))
    """,
        fake,
    )
    assert out == {"spans": 2}


def test_uninstrument_before_openai_import_leaves_openai_untouched(fake: FakeOpenAI) -> None:
    out = _run(
        SETUP
        + """
    import llmmeter
    llmmeter.instrument(tracer_provider=provider)
    llmmeter.uninstrument()
    import openai
    from openai.resources.chat.completions import Completions
    client = openai.OpenAI(base_url="BASE_URL", api_key="k")
    client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    print(json.dumps({"spans": len(exporter.get_finished_spans()),
                      "plain": type(Completions.__dict__["create"]).__name__}))
    """,
        fake,
    )
    assert out == {"spans": 0, "plain": "function"}


def test_opentelemetry_instrument_command_instruments_the_app(
    fake: FakeOpenAI, tmp_path: Any
) -> None:
    """`opentelemetry-instrument python app.py` finds llmmeter through its entry point."""
    app = tmp_path / "app.py"
    app.write_text(
        textwrap.dedent("""
        import openai
        client = openai.OpenAI(base_url="BASE_URL", api_key="k")
        client.chat.completions.create(model="gpt-4o-mini",
                                       messages=[{"role": "user", "content": "hi"}])
    """).replace("BASE_URL", fake.base_url)
    )
    launcher = Path(sys.executable).parent / "opentelemetry-instrument"
    command = [str(launcher), sys.executable, str(app)]
    env = {
        "PATH": "/usr/bin:/bin",
        "OTEL_TRACES_EXPORTER": "console",
        "OTEL_METRICS_EXPORTER": "none",
        "OTEL_LOGS_EXPORTER": "none",
        "OTEL_PYTHON_DISABLED_INSTRUMENTATIONS": "",
    }
    done = subprocess.run(command, capture_output=True, text=True, timeout=60, env=env, check=False)
    assert done.returncode == 0, done.stderr
    assert '"gen_ai.operation.name": "chat"' in done.stdout, done.stdout[-2000:]


def test_opentelemetry_instrument_routes_with_the_policy_file_from_the_environment(
    fake: FakeOpenAI, tmp_path: Any
) -> None:
    """Zero-code: `LLMMETER_POLICY` alone routes the app's calls under opentelemetry-instrument."""
    policy = tmp_path / "policy.toml"
    policy.write_text('[[rules]]\nname = "to-mini"\nfrom = "gpt-4o"\nto = "gpt-4o-mini"\n')
    app = tmp_path / "app.py"
    app.write_text(
        textwrap.dedent("""
        import openai
        client = openai.OpenAI(base_url="BASE_URL", api_key="k")
        reply = client.chat.completions.create(model="gpt-4o",
                                               messages=[{"role": "user", "content": "hi"}])
        print("ANSWERED-BY", reply.model)
    """).replace("BASE_URL", fake.base_url)
    )
    launcher = Path(sys.executable).parent / "opentelemetry-instrument"
    env = {
        "PATH": "/usr/bin:/bin",
        "OTEL_TRACES_EXPORTER": "console",
        "OTEL_METRICS_EXPORTER": "none",
        "OTEL_LOGS_EXPORTER": "none",
        "LLMMETER_POLICY": str(policy),
    }
    done = subprocess.run(
        [str(launcher), sys.executable, str(app)],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "ANSWERED-BY gpt-4o-mini" in done.stdout, done.stdout[-2000:]
    assert '"llmmeter.policy.original_model": "gpt-4o"' in done.stdout
