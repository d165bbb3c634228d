"""``llmmeter.attribute``: labels on every span; allowed keys on metrics, capped and counted."""

from __future__ import annotations

import asyncio
import contextvars
import threading
from collections.abc import Iterator
from typing import Any

import pytest

import llmmeter
from llmmeter._attribution import OVERFLOW, Attribution, current_attribution
from llmmeter._config import resolve_settings
from llmmeter._instrumentor import REGISTRY
from tests.conftest import Telemetry, make_telemetry

ENV = "LLMMETER_METRIC_ATTRIBUTES"
MESSAGES = [{"role": "user", "content": "Say hello"}]


def labels() -> dict[str, str] | None:
    attribution = current_attribution.get()
    return None if attribution is None else dict(attribution.values)


@pytest.fixture
def metered() -> Iterator[Telemetry]:
    """Instrumented with tenant and team allowed on metrics, three values each."""
    tel = make_telemetry()
    tel.instrument(metric_attributes=["tenant", "team"], metric_attribute_limit=3)
    yield tel
    llmmeter.uninstrument()
    tel.meter_provider.shutdown()
    tel.tracer_provider.shutdown()


# --- the context label --------------------------------------------------------------------


def test_inner_block_adds_keys_and_overrides_the_outer_values() -> None:
    assert labels() is None
    with llmmeter.attribute(user="u1", tenant="acme"):
        with llmmeter.attribute(tenant="globex", feature="search", team=None):
            assert labels() == {"user": "u1", "tenant": "globex", "feature": "search"}
        assert labels() == {"user": "u1", "tenant": "acme"}
    assert labels() is None


def test_attribute_decorates_sync_async_and_generator_functions() -> None:
    @llmmeter.attribute(feature="sync")
    def sync() -> dict[str, str] | None:
        return labels()

    @llmmeter.attribute(feature="async")
    async def asynchronous() -> dict[str, str] | None:
        await asyncio.sleep(0)
        return labels()

    @llmmeter.attribute(feature="gen")
    def steps() -> Iterator[dict[str, str] | None]:
        yield labels()
        yield labels()

    assert sync() == {"feature": "sync"}
    assert asyncio.run(asynchronous()) == {"feature": "async"}
    seen = []
    for step in steps():
        seen.append(step)
        assert labels() is None  # the caller runs unlabelled between the generator's steps
    assert seen == [{"feature": "gen"}] * 2


def test_labels_follow_asyncio_tasks_and_copied_contexts_into_threads() -> None:
    async def child() -> dict[str, str] | None:
        await asyncio.sleep(0)
        return labels()

    async def main() -> list[Any]:
        with llmmeter.attribute(tenant="acme"):
            task = asyncio.create_task(child())
        outside = labels()
        return [await task, outside]

    assert asyncio.run(main()) == [{"tenant": "acme"}, None]
    got: list[Any] = []
    with llmmeter.attribute(tenant="acme"):
        context = contextvars.copy_context()
    thread = threading.Thread(target=lambda: got.append(context.run(labels)))
    thread.start()
    thread.join()
    assert got == [{"tenant": "acme"}]


def test_one_attribute_object_shared_by_concurrent_tasks() -> None:
    scope = llmmeter.attribute(team="growth")

    async def one(i: int) -> dict[str, str] | None:
        with scope:
            await asyncio.sleep(0.001 * (i % 3))
            return labels()

    async def main() -> list[Any]:
        return list(await asyncio.gather(*(one(i) for i in range(10))))

    assert asyncio.run(main()) == [{"team": "growth"}] * 10
    assert labels() is None


def test_int_values_become_their_decimal_string() -> None:
    with llmmeter.attribute(user=42):
        assert labels() == {"user": "42"}


@pytest.mark.parametrize(
    ("kwargs", "error", "says"),
    [
        ({"user": 1.5}, TypeError, "user: expected a str or int"),
        ({"tenant": True}, TypeError, "tenant: expected a str or int"),
        ({"feature": ""}, ValueError, "feature: expected 1 to 256 characters"),
        ({"tenant": "x" * 257}, ValueError, "expected 1 to 256 characters; got 257"),
        ({"Team": "a"}, ValueError, "'Team': expected a key of 1-32 lower-case"),
        ({"team_name_that_is_far_too_long_for_a_label": "a"}, ValueError, "expected a key"),
        ({"tenant": OVERFLOW}, ValueError, "expected another"),
        ({}, ValueError, "at least one key"),
        ({"user": None}, ValueError, "at least one key"),
        ({f"k{i}": "v" for i in range(17)}, ValueError, "at most 16 keys"),
    ],
)
def test_bad_keys_and_values_fail_where_the_block_is_written(
    kwargs: dict[str, Any], error: type[Exception], says: str
) -> None:
    with pytest.raises(error, match=says.replace("(", r"\(")):
        llmmeter.attribute(**kwargs)


def test_nesting_past_the_key_cap_fails_on_entry_and_leaves_the_outer_labels() -> None:
    inner = llmmeter.attribute(**{f"b{i}": "v" for i in range(10)})
    with llmmeter.attribute(**{f"a{i}": "v" for i in range(10)}):
        with pytest.raises(ValueError, match="with the outer blocks' keys; got 20"):
            inner.__enter__()
        assert len(labels() or {}) == 10


# --- spans and metrics ----------------------------------------------------------------------


def test_every_key_lands_on_the_span_and_none_on_metrics_by_default(
    telemetry: Telemetry, client: Any
) -> None:
    with llmmeter.attribute(user="u-17", tenant="acme", feature="search", team="growth"):
        client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    attrs = telemetry.span().attributes or {}
    assert attrs["user.id"] == "u-17"
    assert attrs["llmmeter.tenant"] == "acme"
    assert attrs["llmmeter.feature"] == "search"
    assert attrs["llmmeter.attribution.team"] == "growth"
    for name in ("gen_ai.client.operation.duration", "llmmeter.cost.usd"):
        (point,) = telemetry.points(name)
        assert not {"user.id", "llmmeter.tenant", "llmmeter.feature"} & set(point.attributes)


def test_calls_outside_any_block_carry_no_attribution(telemetry: Telemetry, client: Any) -> None:
    with llmmeter.attribute(tenant="acme"):
        pass
    client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    assert "llmmeter.tenant" not in (telemetry.span().attributes or {})


def test_allowed_keys_label_cost_and_tokens_so_cost_per_tenant_is_one_sum(
    metered: Telemetry, client: Any
) -> None:
    for tenant in ("acme", "globex", "acme"):
        with llmmeter.attribute(tenant=tenant, user="u-1", team="search"):
            client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    spans = metered.spans()
    by_tenant: dict[str, float] = {}
    for span in spans:
        attrs = span.attributes or {}
        tenant = str(attrs["llmmeter.tenant"])
        by_tenant[tenant] = by_tenant.get(tenant, 0.0) + float(
            attrs["gen_ai.usage.cost.amount"]  # type: ignore[arg-type]
        )
    points = metered.points("llmmeter.cost.usd")
    assert {p.attributes["llmmeter.tenant"]: p.value for p in points} == pytest.approx(by_tenant)
    for point in points:
        assert point.attributes["llmmeter.attribution.team"] == "search"
        assert "user.id" not in point.attributes  # not allowed: spans only
    tokens = metered.points("gen_ai.client.token.usage")
    assert {p.attributes["llmmeter.tenant"] for p in tokens} == {"acme", "globex"}


def test_values_past_the_cap_go_on_metrics_as_overflow_and_are_counted(
    metered: Telemetry, client: Any, caplog: pytest.LogCaptureFixture
) -> None:
    tenants = ["t1", "t2", "t3", "t4", "t5", "t1", "t4"]
    for tenant in tenants:
        with llmmeter.attribute(tenant=tenant):
            client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    seen = {p.attributes["llmmeter.tenant"] for p in metered.points("llmmeter.cost.usd")}
    assert seen == {"t1", "t2", "t3", OVERFLOW}
    (overflow,) = metered.points("llmmeter.attribution.overflow")
    assert overflow.value == 3  # t4, t5, t4 again
    assert dict(overflow.attributes) == {"llmmeter.attribution_key": "tenant"}
    (cap,) = metered.points("llmmeter.attribution.cap_reached")
    assert cap.value == 1
    assert [(s.attributes or {})["llmmeter.tenant"] for s in metered.spans()] == tenants
    warnings = [r for r in caplog.records if "cap of 3 distinct values" in r.getMessage()]
    assert len(warnings) == 1


def test_the_cap_holds_exactly_under_threads(metered: Telemetry) -> None:
    runtime = REGISTRY.runtime()
    allowed = runtime.attribution if runtime is not None else None
    assert allowed is not None

    barrier = threading.Barrier(8)
    found: list[str] = []

    def admit(i: int) -> None:
        barrier.wait()
        for j in range(20):
            ((_, value),) = allowed.labels(Attribution({"team": f"v{i}-{j}"}))
            found.append(value)

    threads = [threading.Thread(target=admit, args=(i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(set(found) - {OVERFLOW}) == 3
    assert found.count(OVERFLOW) == 8 * 20 - 3


def test_routed_fallback_keeps_the_calls_attribution(server: Any, client: Any) -> None:
    tel = make_telemetry()
    policy = llmmeter.RulePolicy.from_dict(
        {"rules": [{"name": "cheap", "from": "gpt-4o", "to": "gpt-4o-mini"}]}
    )
    tel.instrument(policy=policy, metric_attributes="tenant")
    try:
        server.fail_next(500, times=1)
        with llmmeter.attribute(tenant="acme"):
            client.chat.completions.create(model="gpt-4o", messages=MESSAGES)
        spans = tel.spans()
        assert len(spans) == 2
        assert {(s.attributes or {})["llmmeter.tenant"] for s in spans} == {"acme"}
        actions = {
            p.attributes["llmmeter.policy.action"]: p.attributes["llmmeter.tenant"]
            for p in tel.points("gen_ai.client.operation.duration")
        }
        assert actions == {"route": "acme", "fallback": "acme"}
    finally:
        llmmeter.uninstrument()
        tel.meter_provider.shutdown()


# --- configuration ----------------------------------------------------------------------------


def test_allowed_keys_come_from_the_environment_when_no_argument_says() -> None:
    env = {
        "LLMMETER_METRIC_ATTRIBUTES": " tenant, feature ,tenant",
        "LLMMETER_METRIC_ATTRIBUTES_LIMIT": "50",
    }
    settings = resolve_settings(environ=env)
    assert settings.metric_attributes == ("tenant", "feature")
    assert settings.metric_attribute_limit == 50
    argued = resolve_settings(environ=env, metric_attributes=["team"], metric_attribute_limit=7)
    assert (argued.metric_attributes, argued.metric_attribute_limit) == (("team",), 7)
    assert resolve_settings(environ={}).metric_attributes == ()


@pytest.mark.parametrize(
    ("env", "kwargs", "says"),
    [
        (
            {"LLMMETER_METRIC_ATTRIBUTES": "tenant,User"},
            {},
            "environment variable LLMMETER_METRIC_ATTRIBUTES: expected a key",
        ),
        (
            {"LLMMETER_METRIC_ATTRIBUTES_LIMIT": "0"},
            {},
            "LLMMETER_METRIC_ATTRIBUTES_LIMIT: expected a positive integer",
        ),
        ({}, {"metric_attributes": 5}, "argument metric_attributes: expected a list"),
        ({}, {"metric_attributes": ["tenant", 3]}, "argument metric_attributes: expected a key"),
        (
            {},
            {"metric_attribute_limit": -1},
            "argument metric_attribute_limit: expected a positive",
        ),
        ({}, {"metric_attribute_limit": True}, "argument metric_attribute_limit"),
    ],
)
def test_bad_metric_attribute_settings_fail_at_instrument_naming_them(
    env: dict[str, str], kwargs: dict[str, Any], says: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(llmmeter.ConfigError, match=says):
        llmmeter.instrument(**kwargs)
    assert not REGISTRY.instrumented


def test_labelled_calls_reuse_one_shape_and_label_set_per_value(metered: Telemetry) -> None:
    """Metric labels are built once per (shape, allowed values), not per call; keys not
    allowed on metrics leave the shape as it is."""
    from llmmeter._targets import TARGETS

    runtime = REGISTRY.runtime()
    assert runtime is not None
    target = next(t for t in TARGETS if t.endpoint == "chat" and not t.is_async)
    base = runtime.shape(target, "gpt-4o", None, None, azure=False)
    first = runtime.attributed(base, Attribution({"tenant": "acme", "user": "u1"}))
    again = runtime.attributed(base, Attribution({"tenant": "acme", "user": "u2"}))
    assert first is again and first is not base
    assert first.answered_by("gpt-4o-2024-08-06") is again.answered_by("gpt-4o-2024-08-06")
    assert first.labels["llmmeter.tenant"] == "acme" and "user.id" not in first.labels
    assert runtime.attributed(base, Attribution({"user": "u3"})) is base
