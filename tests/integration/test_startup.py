"""Start-up: what `import llmmeter` and `instrument()` import, lazy patching, lazy price data.

Most scenarios run in a fresh interpreter, because what gets imported (and when) depends on
the import order. No test asserts a time: `benchmarks/bench.py` measures them.
"""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any

import pytest
from packaging.requirements import Requirement

import llmmeter
from llmmeter import ConfigError
from llmmeter._instrumentor import REGISTRY, SUPPORTED_MAJORS
from llmmeter._package import INSTRUMENTED
from llmmeter.testing import FakeOpenAI
from tests.conftest import make_telemetry

from .test_instrumentor import run_script

HEAVY = ("openai", "genai_prices", "pydantic", "opentelemetry.sdk")


def _run(code: str, fake: FakeOpenAI | None = None, *, setup: bool = False) -> Any:
    """Run ``code`` (after :data:`SETUP` if asked) in a fresh interpreter; it prints JSON last."""
    script = f"HEAVY = {HEAVY!r}\n" + (SETUP if setup else "") + textwrap.dedent(code)
    if fake is not None:
        script = script.replace("BASE_URL", fake.base_url)
    return run_script(script, timeout=120)


SETUP = """
import json, sys
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
exporter = InMemorySpanExporter()
tracer_provider = TracerProvider()
tracer_provider.add_span_processor(SimpleSpanProcessor(exporter))
meter_provider = MeterProvider()
PROVIDERS = {"tracer_provider": tracer_provider, "meter_provider": meter_provider}
MESSAGES = [{"role": "user", "content": "hi"}]

def attrs():
    return [dict(span.attributes or {}) for span in exporter.get_finished_spans()]
"""


def test_import_llmmeter_imports_neither_openai_nor_price_data_nor_the_otel_sdk() -> None:
    imported = _run(
        """
        import json, sys
        import llmmeter
        print(json.dumps([name for name in HEAVY if name in sys.modules]))
        """
    )
    assert imported == []


def test_instrument_before_import_openai_imports_neither_and_no_unused_resource() -> None:
    """instrument() first; then `import openai` brings in no resource llmmeter would patch."""
    alone = set(_run("import json, sys, openai\nprint(json.dumps(sorted(sys.modules)))"))
    out = _run(
        """
        import llmmeter
        llmmeter.instrument(**PROVIDERS, strict=True)
        after_instrument = [name for name in HEAVY[:3] if name in sys.modules]
        base_instrumentor = "opentelemetry.instrumentation.instrumentor" in sys.modules
        import openai
        print(json.dumps({
            "after_instrument": after_instrument,
            "base_instrumentor": base_instrumentor,
            "modules": sorted(sys.modules),
        }))
        """,
        setup=True,
    )
    assert out["after_instrument"] == []
    assert out["base_instrumentor"] is False
    added = set(out["modules"]) - alone
    assert not [name for name in added if name.startswith(("openai", "genai_prices"))]


def test_modules_the_sdk_imports_later_are_patched_before_their_first_call(
    fake: FakeOpenAI,
) -> None:
    out = _run(
        """
        import asyncio
        import llmmeter
        llmmeter.instrument(**PROVIDERS, strict=True)
        import openai
        client = openai.OpenAI(base_url="BASE_URL", api_key="k", max_retries=0)
        lazy = "openai.resources.responses" not in sys.modules
        client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
        client.responses.create(model="gpt-4o-mini", input="hi")
        client.embeddings.create(model="text-embedding-3-small", input="x")
        client.completions.create(model="gpt-3.5-turbo-instruct", prompt="hi")
        beta = getattr(client.beta, "responses", None)
        if beta is not None:
            beta.create(model="gpt-4o-mini", input="hi")

        async def main():
            async with openai.AsyncOpenAI(base_url="BASE_URL", api_key="k") as aclient:
                await aclient.embeddings.create(model="text-embedding-3-small", input="x")

        asyncio.run(main())
        spans = attrs()
        print(json.dumps({
            "lazy": lazy,
            "beta": beta is not None,
            "operations": [a["gen_ai.operation.name"] for a in spans],
            "priced": [a.get("gen_ai.usage.cost.amount", 0) > 0 for a in spans],
        }))
        """,
        fake,
        setup=True,
    )
    assert out["lazy"] is True
    operations = ["chat", "chat", "embeddings", "text_completion"]
    operations += ["chat"] * out["beta"] + ["embeddings"]
    assert out["operations"] == operations
    assert all(out["priced"])


def test_uninstrument_restores_methods_patched_lazily(fake: FakeOpenAI) -> None:
    out = _run(
        """
        import llmmeter
        import openai
        llmmeter.instrument(**PROVIDERS, strict=True)
        from openai.resources.responses import Responses  # first import: patched by its hook
        patched = Responses.__dict__["create"]
        original = patched.__wrapped__
        llmmeter.uninstrument()
        restored = Responses.__dict__["create"] is original
        # Imported while uninstrumented: left alone; instrumented again: patched at once.
        from openai.resources.embeddings import Embeddings
        untouched = type(Embeddings.__dict__["create"]).__name__
        llmmeter.instrument(**PROVIDERS, strict=True)
        wrapped_once = Responses.__dict__["create"].__wrapped__ is original
        embeddings_patched = type(Embeddings.__dict__["create"]).__name__
        llmmeter.uninstrument()
        print(json.dumps({
            "patched": type(patched).__name__,
            "restored": restored,
            "untouched": untouched,
            "wrapped_once": wrapped_once,
            "embeddings_patched": embeddings_patched,
            "restored_again": Responses.__dict__["create"] is original,
        }))
        """,
        fake,
        setup=True,
    )
    assert out == {
        "patched": "FunctionWrapper",
        "restored": True,
        "untouched": "function",
        "wrapped_once": True,
        "embeddings_patched": "FunctionWrapper",
        "restored_again": True,
    }


def test_module_another_thread_is_importing_is_patched_once_its_import_ends() -> None:
    """instrument() while a thread is importing a resource: wrapt hands the hook the module
    half-built; the hook waits for the import instead of finding no class to patch."""
    out = _run(
        """
        import importlib.abc, importlib.util, threading, time
        import openai
        import llmmeter

        NAME = "openai.resources.embeddings"
        started = threading.Event()

        class SlowLoader(importlib.abc.Loader):
            def __init__(self, loader):
                self.loader = loader

            def create_module(self, spec):
                return self.loader.create_module(spec)

            def exec_module(self, module):
                started.set()  # the module is in sys.modules now, still empty
                time.sleep(0.5)
                self.loader.exec_module(module)

        class SlowFinder(importlib.abc.MetaPathFinder):
            def find_spec(self, name, path, target=None):
                if name != NAME:
                    return None
                sys.meta_path.remove(self)
                spec = importlib.util.find_spec(name)
                spec.loader = SlowLoader(spec.loader)
                return spec

        sys.meta_path.insert(0, SlowFinder())
        importer = threading.Thread(target=importlib.import_module, args=(NAME,))
        importer.start()
        started.wait()
        llmmeter.instrument(**PROVIDERS)
        importer.join()
        from openai.resources.embeddings import Embeddings
        print(json.dumps(type(Embeddings.__dict__["create"]).__name__))
        """,
        setup=True,
    )
    assert out == "FunctionWrapper"


@pytest.mark.parametrize(
    ("document", "message"),
    [
        ('[models."gpt-4o"]\ninput = 2.0\n', r"expected an 'output' rate"),
        ('[aliases]\n"prod" = "no-such-model-anywhere"\n', r"which has none"),
    ],
)
def test_bad_prices_file_still_raises_config_error_at_instrument(
    tmp_path: Path, document: str, message: str
) -> None:
    path = tmp_path / "prices.toml"
    path.write_text(document)
    with pytest.raises(ConfigError, match=message):
        make_telemetry().instrument(prices=str(path))
    assert not REGISTRY.instrumented


def test_prices_file_loads_the_data_at_instrument_only_to_check_an_alias(
    tmp_path: Path,
) -> None:
    own = tmp_path / "own.toml"
    own.write_text('[models."house-7"]\ninput = 1.0\noutput = 4.0\n[aliases]\n"h" = "house-7"\n')
    alias = tmp_path / "alias.toml"
    alias.write_text('[aliases]\n"prod-gpt4o" = "gpt-4o"\n')
    loaded = [
        _run(
            f"""
            import llmmeter
            llmmeter.instrument(**PROVIDERS, prices={str(path)!r})
            print(json.dumps("genai_prices" in sys.modules))
            """,
            setup=True,
        )
        for path in (own, alias)
    ]
    assert loaded == [False, True]


def test_concurrent_first_calls_wait_for_one_load_and_are_priced_correctly(
    fake: FakeOpenAI,
) -> None:
    """The data loads at the first priced call; a second one meanwhile waits for that load."""
    out = _run(
        """
        import threading, time
        import llmmeter
        from llmmeter import _pricing

        loads = []
        load = _pricing._Data.__init__

        def slow_load(self):
            loads.append(1)
            time.sleep(0.3)
            load(self)

        _pricing._Data.__init__ = slow_load
        import openai
        llmmeter.instrument(**PROVIDERS, strict=True)
        client = openai.OpenAI(base_url="BASE_URL", api_key="k", max_retries=0)
        client.chat.completions
        loaded_early = "genai_prices" in sys.modules
        start = threading.Barrier(2)
        usages = []

        def call():
            start.wait()
            reply = client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
            usages.append((reply.model, reply.usage.model_dump()))

        threads = [threading.Thread(target=call) for _ in range(2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        expected = sorted(llmmeter.price(model, usage).total for model, usage in usages)
        print(json.dumps({
            "loaded_early": loaded_early,
            "loads": len(loads),
            "costs": sorted(a["gen_ai.usage.cost.amount"] for a in attrs()),
            "expected": expected,
            "refs": [a["llmmeter.price.ref"].split()[0] for a in attrs()],
        }))
        """,
        fake,
        setup=True,
    )
    assert out["loaded_early"] is False
    assert out["loads"] == 1
    assert out["costs"] == out["expected"]
    assert out["refs"] == ["genai-prices", "genai-prices"]


def test_price_data_that_fails_to_load_disables_it_with_one_warning(
    fake: FakeOpenAI, tmp_path: Path
) -> None:
    prices = tmp_path / "prices.toml"
    prices.write_text('[models."gpt-4o"]\ninput = 2.0\noutput = 8.0\n')
    out = _run(
        f"""
        import logging
        import llmmeter
        from llmmeter import _pricing

        def broken(self):
            raise ImportError("genai_prices is broken")

        _pricing._Data.__init__ = broken
        warnings = []

        class Collect(logging.Handler):
            def emit(self, record):
                warnings.append(record.getMessage())

        logging.getLogger("llmmeter").addHandler(Collect(logging.WARNING))
        import openai
        llmmeter.instrument(**PROVIDERS, strict=True, prices={str(prices)!r})
        import llmmeter.testing
        # Reached as api.openai.com: a loopback server's calls would be a local server's.
        client = llmmeter.testing.client_as("BASE_URL", "openai", api_key="k")
        for model in ("gpt-4o-mini", "gpt-4o", "gpt-4o-mini"):
            client.chat.completions.create(model=model, messages=MESSAGES)
        print(json.dumps({{
            "refs": [a["llmmeter.price.ref"] for a in attrs()],
            "costs": ["gen_ai.usage.cost.amount" in a for a in attrs()],
            "warnings": warnings,
            "price": repr(llmmeter.price("gpt-4o-mini", {{"prompt_tokens": 10}})),
        }}))
        """,
        fake,
        setup=True,
    )
    assert out["refs"] == ["unknown", "override", "unknown"]
    assert out["costs"] == [False, True, False]
    (warning,) = out["warnings"]
    assert "cannot load the genai-prices data" in warning
    assert out["price"] == "None"


def test_price_in_a_script_loads_the_data_without_openai() -> None:
    out = _run(
        """
        import json, sys
        import llmmeter
        cost = llmmeter.price("gpt-4o-mini", {"prompt_tokens": 1000, "completion_tokens": 500})
        print(json.dumps({"total": cost.total, "openai": "openai" in sys.modules}))
        """
    )
    assert out["total"] == pytest.approx(0.00045)
    assert out["openai"] is False


def test_supported_majors_match_the_declared_openai_range() -> None:
    (requirement,) = [Requirement(line) for line in INSTRUMENTED]
    assert requirement.name == "openai"
    for major in range(6):
        supported = requirement.specifier.contains(f"{major}.5.0")
        assert supported == (major in SUPPORTED_MAJORS), major


def test_unsupported_openai_version_is_left_unpatched_with_an_error(fake: FakeOpenAI) -> None:
    out = _run(
        """
        import logging
        import openai
        openai.__version__ = "4.0.0"
        errors = []

        class Collect(logging.Handler):
            def emit(self, record):
                errors.append(record.getMessage())

        logging.getLogger("llmmeter").addHandler(Collect(logging.ERROR))
        import llmmeter
        llmmeter.instrument(**PROVIDERS)
        from openai.resources.chat.completions import Completions
        print(json.dumps({"create": type(Completions.__dict__["create"]).__name__,
                          "errors": errors}))
        """,
        fake,
        setup=True,
    )
    assert out["create"] == "function"
    (error,) = out["errors"]
    assert "openai >= 1.0, < 4" in error
    assert "4.0.0" in error


def test_entry_point_instrumentor_and_instrument_share_one_state(
    server: FakeOpenAI, client: Any
) -> None:
    from llmmeter._instrumentor import LLMMeterInstrumentor

    tel = make_telemetry()
    LLMMeterInstrumentor().instrument(
        tracer_provider=tel.tracer_provider, meter_provider=tel.meter_provider
    )
    try:
        assert REGISTRY.instrumented
        client.chat.completions.create(
            model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}]
        )
        assert len(tel.spans()) == 1
        llmmeter.uninstrument()
        assert not LLMMeterInstrumentor().is_instrumented_by_opentelemetry
        tel.instrument()
        assert LLMMeterInstrumentor().is_instrumented_by_opentelemetry
        LLMMeterInstrumentor().uninstrument()
        assert not REGISTRY.instrumented
    finally:
        llmmeter.uninstrument()


# --- patching is never silently partial -------------------------------------------------

INTERRUPT_ONCE = """
import importlib.abc

class InterruptOnce(importlib.abc.MetaPathFinder):
    # Ctrl-C (or a job timeout raised from a signal handler) lands while openai imports the
    # module WHERE on the application's first call.
    armed = True
    def find_spec(self, name, path=None, target=None):
        if name == WHERE and InterruptOnce.armed:
            InterruptOnce.armed = False
            raise KeyboardInterrupt
        return None

sys.meta_path.insert(0, InterruptOnce())
"""


@pytest.mark.parametrize(
    "where",
    [
        "openai.resources.chat.completions.completions",  # the module with the class
        "openai.lib.streaming.chat._completions",  # a module it imports in turn
        "openai.resources.chat.completions",  # the package llmmeter hooks
    ],
)
def test_an_interrupt_during_the_first_calls_lazy_imports_leaves_nothing_unpatched(
    fake: FakeOpenAI, where: str
) -> None:
    """The application catches the interrupt and calls again: that call, and every later
    one, has its span (the interrupted import is retried by the application's own call, and
    llmmeter's patching with it)."""
    spans = _run(
        f"WHERE = {where!r}\n"
        + INTERRUPT_ONCE
        + """
import llmmeter, openai
llmmeter.instrument(**PROVIDERS)
client = openai.OpenAI(base_url="BASE_URL", api_key="k", max_retries=0)
try:
    client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    interrupted = False
except KeyboardInterrupt:
    interrupted = True
for _ in range(2):
    client = openai.OpenAI(base_url="BASE_URL", api_key="k", max_retries=0)
    client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
print(json.dumps({"interrupted": interrupted, "spans": len(attrs())}))
""",
        fake,
        setup=True,
    )
    assert spans == {"interrupted": True, "spans": 2}


def test_an_interrupt_while_llmmeter_wraps_a_class_still_wraps_it(fake: FakeOpenAI) -> None:
    """The interrupt waits the microseconds patching takes: the class lives on in a module
    that the application's retry will not import again."""
    spans = _run(
        """
from llmmeter._instrumentor import Registry
real_wrap = Registry._wrap
armed = [True]
def interrupted_wrap(self, cls, method, wrapper):
    if armed[0] and cls.__name__ == "Completions" and ".chat." in cls.__module__:
        armed[0] = False
        raise KeyboardInterrupt
    return real_wrap(self, cls, method, wrapper)
Registry._wrap = interrupted_wrap
import llmmeter, openai
llmmeter.instrument(**PROVIDERS)
client = openai.OpenAI(base_url="BASE_URL", api_key="k", max_retries=0)
try:
    client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    interrupted = False
except KeyboardInterrupt:
    interrupted = True
client = openai.OpenAI(base_url="BASE_URL", api_key="k", max_retries=0)
client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
print(json.dumps({"interrupted": interrupted, "spans": len(attrs())}))
""",
        fake,
        setup=True,
    )
    assert spans == {"interrupted": True, "spans": 1}
