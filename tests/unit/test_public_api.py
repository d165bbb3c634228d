"""The public surface is small and pinned."""

from __future__ import annotations

import ast
import asyncio
import os
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

import llmmeter
import llmmeter.testing
from llmmeter._task import current_key, current_task


def test_public_names_are_exactly_these() -> None:
    assert llmmeter.__all__ == [
        "CallView",
        "ConfigError",
        "Cost",
        "Policy",
        "Route",
        "RulePolicy",
        "__version__",
        "attribute",
        "instrument",
        "price",
        "task",
        "uninstrument",
    ]
    for name in llmmeter.__all__:
        assert hasattr(llmmeter, name)


PUBLIC_MODULES = frozenset({"exceptions", "testing"})
"""Submodules users import by name (``llmmeter.exceptions.ConfigError``, ``llmmeter.testing``)."""


def test_dir_shows_the_public_names_and_nothing_else() -> None:
    shown = {name for name in dir(llmmeter) if not name.startswith("_")}
    modules = {name for name in shown if isinstance(getattr(llmmeter, name), ModuleType)}
    assert modules <= PUBLIC_MODULES
    assert shown - modules == {name for name in llmmeter.__all__ if not name.startswith("_")}


LAZY = frozenset({"RulePolicy"})
"""Public names whose module loads on first use (``llmmeter.__getattr__``)."""


def test_the_package_init_defines_nothing_it_only_re_exports() -> None:
    assert llmmeter.__file__ is not None
    tree = ast.parse(Path(llmmeter.__file__).read_text(encoding="utf-8"))
    body = tree.body
    assert isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant)  # docstring
    for node in body[1:]:
        if isinstance(node, ast.ImportFrom):
            assert node.level == 1 or node.module == "typing", ast.unparse(node)
            continue
        if isinstance(node, ast.If):  # `if TYPE_CHECKING:` the lazy names, for type checkers
            assert ast.unparse(node.test) == "_TYPE_CHECKING", ast.unparse(node)
            continue
        if isinstance(node, ast.FunctionDef):  # the lazy-name hooks of PEP 562, nothing else
            assert node.name in ("__getattr__", "__dir__"), node.name
            continue
        assert isinstance(node, ast.Assign), ast.unparse(node)
        assert [ast.unparse(t) for t in node.targets] == ["__all__"]


def test_import_llmmeter_leaves_the_policy_machinery_unloaded() -> None:
    """Start-up pays for rules, comparators, prompt patterns and the spend poller only in a
    process that has a policy (a third of start-up's instructions, docs/performance.md)."""
    code = (
        "import sys, llmmeter\n"
        "llmmeter.instrument(tracer_provider=__import__('opentelemetry.sdk.trace', "
        "fromlist=['TracerProvider']).TracerProvider())\n"
        "lazy = ('llmmeter._rules', 'llmmeter._compare', 'llmmeter._patterns', "
        "'llmmeter._spend', 'llmmeter._prometheus', 'llmmeter._watch')\n"
        "print(sorted(m for m in lazy if m in sys.modules))\n"
        "print(llmmeter.RulePolicy.__module__, 'RulePolicy' in dir(llmmeter))\n"
        "print('llmmeter._rules' in sys.modules)\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LLMMETER_", "OTEL_"))}
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True
    )
    assert done.stdout.splitlines() == ["[]", "llmmeter._rules True", "True"], done.stderr


def test_lazy_public_names_are_the_modules_own_objects() -> None:
    from llmmeter._rules import RulePolicy

    assert set(LAZY) <= set(llmmeter.__all__)
    assert llmmeter.RulePolicy is RulePolicy
    with pytest.raises(AttributeError, match="no attribute 'Nope'"):
        llmmeter.Nope  # noqa: B018


def test_testing_module_exports_the_fake_server() -> None:
    assert "FakeOpenAI" in llmmeter.testing.__all__
    assert llmmeter.testing.__all__ == sorted(llmmeter.testing.__all__)


def test_task_is_a_context_manager_that_nests_and_restores() -> None:
    assert current_task.get() is None
    with llmmeter.task("outer"):
        with llmmeter.task("inner"):
            assert current_task.get() == "inner"
        assert current_task.get() == "outer"
    assert current_task.get() is None


def test_task_decorates_sync_and_async_functions() -> None:
    @llmmeter.task("sync-job")
    def sync_job() -> str | None:
        return current_task.get()

    @llmmeter.task("async-job")
    async def async_job() -> str | None:
        await asyncio.sleep(0)
        return current_task.get()

    assert sync_job() == "sync-job"
    assert asyncio.run(async_job()) == "async-job"
    assert current_task.get() is None


def test_one_task_object_shared_by_concurrent_tasks() -> None:
    shared = llmmeter.task("shared")

    async def worker(i: int) -> str | None:
        with shared:
            await asyncio.sleep(0.001 * (i % 3))
            return current_task.get()

    async def main() -> list[str | None]:
        return await asyncio.gather(*(worker(i) for i in range(20)))

    assert asyncio.run(main()) == ["shared"] * 20
    assert current_task.get() is None


def test_task_key_nests_and_inner_tasks_keep_the_outer_key() -> None:
    assert current_key.get() is None
    with llmmeter.task("conversation", key="c-1"):
        assert current_key.get() == "c-1"
        with llmmeter.task("classify"):
            assert (current_task.get(), current_key.get()) == ("classify", "c-1")
        with llmmeter.task("other", key=42):
            assert current_key.get() == "42"
        assert current_key.get() == "c-1"
    assert current_key.get() is None


def test_task_key_on_decorated_functions_and_concurrent_tasks() -> None:
    @llmmeter.task("job", key="k-sync")
    def sync_job() -> str | None:
        return current_key.get()

    async def worker(i: int) -> tuple[str | None, str | None]:
        with llmmeter.task("w", key=f"k-{i}"):
            await asyncio.sleep(0.001 * (i % 3))
            return current_task.get(), current_key.get()

    async def main() -> list[tuple[str | None, str | None]]:
        return await asyncio.gather(*(worker(i) for i in range(20)))

    assert sync_job() == "k-sync"
    assert asyncio.run(main()) == [("w", f"k-{i}") for i in range(20)]
    assert current_key.get() is None


@pytest.mark.parametrize("key", [1.5, True, b"bytes", ["list"]])
def test_task_rejects_keys_that_are_not_str_or_int(key: object) -> None:
    with pytest.raises(TypeError, match="key"):
        llmmeter.task("x", key=key)  # type: ignore[arg-type]


def test_task_labels_the_steps_of_a_generator_but_not_its_caller() -> None:
    @llmmeter.task("gen")
    def numbers() -> Any:
        seen = [current_task.get()]
        received = yield 1
        seen.append(current_task.get())
        yield received
        seen.append(current_task.get())
        return seen

    gen = numbers()
    assert next(gen) == 1
    assert current_task.get() is None  # the caller between steps is not labelled
    assert gen.send("x") == "x"
    with pytest.raises(StopIteration) as done:
        next(gen)
    assert done.value.value == ["gen", "gen", "gen"]


def test_task_labels_the_steps_of_an_async_generator() -> None:
    @llmmeter.task("agen")
    async def numbers() -> Any:
        for n in range(3):
            await asyncio.sleep(0)
            yield (n, current_task.get())

    async def main() -> list[Any]:
        out = []
        async for item in numbers():
            out.append((*item, current_task.get()))
        return out

    assert asyncio.run(main()) == [(n, "agen", None) for n in range(3)]


def test_task_generator_passes_throw_and_close_through() -> None:
    closed: list[bool] = []

    @llmmeter.task("gen")
    def worker() -> Any:
        try:
            while True:
                try:
                    yield current_task.get()
                except ValueError:
                    yield "handled"
        finally:
            closed.append(True)

    gen = worker()
    assert next(gen) == "gen"
    assert gen.throw(ValueError("x")) == "handled"
    gen.close()
    assert closed == [True]
