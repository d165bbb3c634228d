"""Shadow evaluation against the fake server: the sampled call's request really goes to the
other model of the pair, after the user's call returned, off the user's thread; the two
answers are judged and counted by rule; a full queue, a spent budget, a failing comparator
or request, and the interpreter's exit are all counted and never touch the user's call."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import pytest

import llmmeter
from llmmeter import ConfigError, Route, RulePolicy
from llmmeter._policy import stable_fraction
from llmmeter.testing import FakeOpenAI
from tests.conftest import Telemetry, make_telemetry

ORIGINAL = "gpt-4o"
TARGET = "gpt-4o-mini"
EVALUATE = "llmmeter.evaluations"
AGREEMENT = "llmmeter.evaluation.agreement"
ERRORS = "llmmeter.evaluation.errors"
DROPPED = "llmmeter.evaluation.dropped"


def rule(**extra: Any) -> dict[str, Any]:
    return {"name": "sentiment", "from": [ORIGINAL], "to": TARGET, "evaluate": 1.0, **extra}


def ask(client: Any, prompt: str, **extra: Any) -> Any:
    return client.chat.completions.create(
        model=ORIGINAL, messages=[{"role": "user", "content": prompt}], **extra
    )


@pytest.fixture
def disagreeing(server: FakeOpenAI) -> FakeOpenAI:
    """gpt-4o says "positive" to everything; gpt-4o-mini says "negative" to prompts about
    slowness and "positive" to the rest."""
    server.answer(TARGET, "negative", prompt="slow")
    server.answer(f"{TARGET}*", "positive")
    server.answer(f"{ORIGINAL}*", "positive")
    return server


@pytest.fixture
def tel() -> Iterator[Telemetry]:
    tel = make_telemetry()
    yield tel
    llmmeter.uninstrument()
    tel.meter_provider.shutdown()
    tel.tracer_provider.shutdown()


def total(tel: Telemetry, name: str, **labels: str) -> float:
    """The sum of a counter's points whose attributes include ``labels``."""
    return float(
        sum(
            point.value
            for point in tel.points(name)
            if all(
                point.attributes.get("llmmeter." + k.replace("_", ".")) == v
                for k, v in labels.items()
            )
        )
    )


def wait_until(check: Callable[[], bool], timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError("timed out waiting for the evaluations")
        time.sleep(0.02)


def settled(tel: Telemetry, calls: int) -> Callable[[], bool]:
    """Every one of ``calls`` sampled calls was judged, failed or dropped."""
    return lambda: total(tel, EVALUATE) + total(tel, ERRORS) + total(tel, DROPPED) >= calls


def evaluation_spans(tel: Telemetry) -> list[Any]:
    return [s for s in tel.spans() if s.attributes.get("llmmeter.policy.action") == "evaluate"]


def chat_requests(server: FakeOpenAI, model: str) -> list[Mapping[str, Any]]:
    return [
        r.body
        for r in server.requests
        if r.path.endswith("/chat/completions") and r.body and r.body.get("model") == model
    ]


# --- what is sent, and how the answers are judged -------------------------------------------


PROMPTS = ["Great boots", "Too slow to ship", "Fine, thanks", "slow and late"]


def test_shadow_mode_sends_the_same_request_to_the_target_and_counts_agreement(
    tel: Telemetry, disagreeing: FakeOpenAI, client: Any
) -> None:
    tel.instrument(policy=RulePolicy([rule(mode="shadow")]))
    for prompt in PROMPTS:
        assert ask(client, prompt, temperature=0).choices[0].message.content == "positive"
    wait_until(settled(tel, len(PROMPTS)))

    assert total(tel, EVALUATE, policy_rule="sentiment") == 4
    assert total(tel, AGREEMENT, policy_rule="sentiment") == 2  # the two "slow" prompts differ
    assert total(tel, ERRORS) == total(tel, DROPPED) == 0
    sent = chat_requests(disagreeing, TARGET)
    assert sorted(body["messages"][0]["content"] for body in sent) == sorted(PROMPTS)
    assert all(body["temperature"] == 0 and "stream" not in body for body in sent)

    users = {s.context.span_id: s for s in tel.spans() if s not in evaluation_spans(tel)}
    scores = []
    for span in evaluation_spans(tel):
        assert span.name == f"chat {TARGET}"
        assert span.parent is None
        (link,) = span.links
        user = users[link.context.span_id]  # linked to the user's call
        assert user.attributes["llmmeter.policy.action"] == "shadow"
        assert span.attributes["llmmeter.evaluation"] is True
        assert span.attributes["llmmeter.policy.rule"] == "sentiment"
        assert span.attributes["llmmeter.evaluation.comparator"] == "exact"
        assert span.start_time >= user.end_time  # sent after the user's call returned
        scores.append(span.attributes["llmmeter.evaluation.score"])
    assert sorted(scores) == [0.0, 0.0, 1.0, 1.0]


def test_evaluation_cost_is_labelled_apart_from_the_users(
    tel: Telemetry, disagreeing: FakeOpenAI, client: Any
) -> None:
    tel.instrument(policy=RulePolicy([rule(mode="shadow")]))
    ask(client, "Great boots")
    wait_until(settled(tel, 1))
    costs = {
        (p.attributes["gen_ai.request.model"], p.attributes.get("llmmeter.evaluation")): p.value
        for p in tel.points("llmmeter.cost.usd")
    }
    assert set(costs) == {(ORIGINAL, None), (TARGET, True)}
    assert all(value > 0 for value in costs.values())
    decisions = {
        p.attributes["llmmeter.policy.action"]: p.value
        for p in tel.points("llmmeter.policy.decisions")
    }
    assert decisions == {"shadow": 1, "evaluate": 1}


def test_enforce_mode_evaluates_against_the_original_model(
    tel: Telemetry, disagreeing: FakeOpenAI, client: Any
) -> None:
    tel.instrument(policy=RulePolicy([rule()]))
    assert ask(client, "Too slow to ship").choices[0].message.content == "negative"  # routed
    assert ask(client, "Great boots").choices[0].message.content == "positive"
    wait_until(settled(tel, 2))
    assert len(chat_requests(disagreeing, TARGET)) == 2  # the users' calls
    assert len(chat_requests(disagreeing, ORIGINAL)) == 2  # the evaluations
    assert total(tel, EVALUATE) == 2
    assert total(tel, AGREEMENT) == 1
    assert {s.name for s in evaluation_spans(tel)} == {f"chat {ORIGINAL}"}


def test_a_label_comparator_judges_the_extracted_labels(
    tel: Telemetry, server: FakeOpenAI, client: Any
) -> None:
    server.answer(f"{TARGET}*", "Sentiment: POSITIVE (fairly sure)")
    server.answer(f"{ORIGINAL}*", "I would say positive.")
    tel.instrument(
        policy=RulePolicy([rule(mode="shadow", compare="label", label=r"(?i)positive|negative")])
    )
    ask(client, "Great boots")
    wait_until(settled(tel, 1))
    assert total(tel, AGREEMENT) == total(tel, EVALUATE) == 1


def test_a_comparator_in_code_scores_the_pair(
    tel: Telemetry, disagreeing: FakeOpenAI, client: Any
) -> None:
    seen: list[tuple[str | None, str | None]] = []

    def half(original: Any, candidate: Any) -> float:
        seen.append((original.text, candidate.text))
        return 0.5

    tel.instrument(policy=RulePolicy([rule(mode="shadow", compare=half)]))
    ask(client, "Too slow to ship")
    wait_until(settled(tel, 1))
    assert seen == [("positive", "negative")]  # (the original model's, the target's)
    assert total(tel, AGREEMENT) == 0.5
    assert evaluation_spans(tel)[0].attributes["llmmeter.evaluation.comparator"].endswith("half")


def test_a_comparator_that_raises_counts_an_error_never_agreement(
    tel: Telemetry, disagreeing: FakeOpenAI, client: Any
) -> None:
    def broken(original: Any, candidate: Any) -> float:
        raise RuntimeError("secret answer text")

    tel.instrument(policy=RulePolicy([rule(mode="shadow", compare=broken)]))
    reply = ask(client, "Great boots")
    assert reply.choices[0].message.content == "positive"
    wait_until(settled(tel, 1))
    assert total(tel, ERRORS, evaluation_reason="comparator") == 1
    assert total(tel, EVALUATE) == total(tel, AGREEMENT) == 0
    (span,) = evaluation_spans(tel)
    assert span.attributes["llmmeter.evaluation.error"] == "the comparator raised RuntimeError"
    assert "secret" not in str(dict(span.attributes))


def test_a_failed_evaluation_request_is_counted_and_never_retried(
    tel: Telemetry, disagreeing: FakeOpenAI, client: Any
) -> None:
    tel.instrument(policy=RulePolicy([rule(mode="shadow")]))
    disagreeing.fail_next(500, model=TARGET)
    assert ask(client, "Great boots").choices[0].message.content == "positive"
    wait_until(settled(tel, 1))
    assert total(tel, ERRORS, evaluation_reason="request") == 1
    assert len(chat_requests(disagreeing, TARGET)) == 1
    (span,) = evaluation_spans(tel)
    assert span.attributes["error.type"] == "500"


# --- which calls are evaluated ---------------------------------------------------------------


def test_evaluate_samples_a_sticky_fraction_by_key(
    tel: Telemetry, disagreeing: FakeOpenAI, client: Any
) -> None:
    tel.instrument(policy=RulePolicy([rule(mode="shadow", evaluate=0.5)]))
    keys = [f"conversation-{n}" for n in range(16)]
    for key in keys + keys:  # each key twice: the same verdict both times
        with llmmeter.task("triage", key=key):
            ask(client, "Great boots")
    chosen = [k for k in keys if stable_fraction("sentiment#evaluate", k) < 0.5]
    assert 0 < len(chosen) < len(keys)
    wait_until(settled(tel, 2 * len(chosen)))
    time.sleep(0.2)  # nothing more arrives
    assert total(tel, EVALUATE) == 2 * len(chosen)
    assert {s.attributes["llmmeter.task"] for s in evaluation_spans(tel)} == {"triage"}


def test_a_stream_is_evaluated_only_once_read_to_the_end(
    tel: Telemetry, disagreeing: FakeOpenAI, client: Any
) -> None:
    tel.instrument(policy=RulePolicy([rule(mode="shadow")]))
    stream = ask(client, "Too slow to ship", stream=True)
    first = next(iter(stream))
    assert first is not None
    time.sleep(0.2)
    assert chat_requests(disagreeing, TARGET) == []  # not while the user reads
    text = "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
    assert "positive" in (first.choices[0].delta.content or "") + text
    wait_until(settled(tel, 1))
    assert total(tel, EVALUATE) == 1
    assert total(tel, AGREEMENT) == 0  # the streamed "positive" against "negative"

    closed = ask(client, "Great boots", stream=True)
    next(iter(closed))
    closed.close()  # an answer the user did not get whole is not evaluated
    time.sleep(0.3)
    assert len(chat_requests(disagreeing, TARGET)) == 1


def test_a_call_that_fell_back_is_not_evaluated(
    tel: Telemetry, disagreeing: FakeOpenAI, client: Any
) -> None:
    tel.instrument(policy=RulePolicy([rule()]))
    disagreeing.fail_next(429, model=TARGET)
    assert ask(client, "Great boots").choices[0].message.content == "positive"
    time.sleep(0.3)
    assert evaluation_spans(tel) == []
    assert total(tel, EVALUATE) + total(tel, ERRORS) + total(tel, DROPPED) == 0


async def test_an_async_client_is_evaluated_off_its_event_loop(
    tel: Telemetry, disagreeing: FakeOpenAI, aclient: Any
) -> None:
    tel.instrument(policy=RulePolicy([rule(mode="shadow")]))
    loop_thread = threading.get_ident()
    reply = await aclient.chat.completions.create(
        model=ORIGINAL, messages=[{"role": "user", "content": "Too slow to ship"}]
    )
    assert reply.choices[0].message.content == "positive"
    wait_until(settled(tel, 1))
    assert total(tel, EVALUATE) == 1
    assert total(tel, AGREEMENT) == 0
    assert threading.get_ident() == loop_thread
    assert len(chat_requests(disagreeing, TARGET)) == 1


def test_a_custom_policy_evaluates_with_its_comparators(
    tel: Telemetry, disagreeing: FakeOpenAI, client: Any
) -> None:
    class Mine:
        comparators = {"mine": lambda original, candidate: 0.25}

        def decide(self, call: Any) -> Route | None:
            return Route(TARGET, "mine", shadow=True, evaluate=True)

    tel.instrument(policy=Mine())
    ask(client, "Great boots")
    wait_until(settled(tel, 1))
    assert total(tel, AGREEMENT, policy_rule="mine") == 0.25


# --- bounds: queue, budget, exit ---------------------------------------------------------------


def test_a_full_queue_drops_and_counts_never_blocking_the_user(
    tel: Telemetry, disagreeing: FakeOpenAI, client: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LLMMETER_EVALUATION_CONCURRENCY", "1")
    monkeypatch.setenv("LLMMETER_EVALUATION_QUEUE_SIZE", "1")
    # Long enough that the user's six calls are made while the first evaluation is still
    # being sent, however loaded the machine.
    disagreeing.set_latency(response=3.0, model=TARGET)
    tel.instrument(policy=RulePolicy([rule(mode="shadow")]))
    for _ in range(6):
        ask(client, "Great boots")
    wait_until(settled(tel, 6))
    dropped = total(tel, DROPPED, evaluation_reason="queue_full")
    assert dropped >= 3  # one being sent, one queued at most while the user made six calls
    assert total(tel, EVALUATE) + dropped == 6


def test_a_spent_budget_pauses_evaluation_and_says_so_once(
    tel: Telemetry,
    disagreeing: FakeOpenAI,
    client: Any,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="llmmeter")
    policy = RulePolicy.from_dict({"evaluation_budget_usd": 0.000001, "rules": [rule()]})
    tel.instrument(policy=policy)
    ask(client, "Great boots")
    wait_until(settled(tel, 1))
    assert total(tel, EVALUATE) == 1  # one evaluation of gpt-4o costs more than the budget
    for _ in range(3):
        ask(client, "Great boots")
    wait_until(settled(tel, 4))
    assert total(tel, DROPPED, evaluation_reason="budget") == 3
    paused = [r for r in caplog.records if "shadow evaluation paused" in r.getMessage()]
    assert len(paused) == 1
    assert "evaluation_budget_usd = 1e-06" in paused[0].getMessage()


def test_a_zero_budget_never_evaluates(
    tel: Telemetry, disagreeing: FakeOpenAI, client: Any
) -> None:
    tel.instrument(policy=RulePolicy.from_dict({"evaluation_budget_usd": 0, "rules": [rule()]}))
    ask(client, "Great boots")
    wait_until(settled(tel, 1))
    assert total(tel, DROPPED, evaluation_reason="budget") == 1
    assert chat_requests(disagreeing, ORIGINAL) == []


def test_uninstrument_stops_the_workers(
    tel: Telemetry, disagreeing: FakeOpenAI, client: Any
) -> None:
    tel.instrument(policy=RulePolicy([rule(mode="shadow")]))
    ask(client, "Great boots")
    wait_until(settled(tel, 1))
    assert any(t.name.startswith("llmmeter-evaluator") for t in threading.enumerate())
    llmmeter.uninstrument()
    wait_until(
        lambda: not any(t.name.startswith("llmmeter-evaluator") for t in threading.enumerate())
    )


# --- configuration -------------------------------------------------------------------------


def test_comparators_for_a_file_must_name_a_rule_that_evaluates(tmp_path: Any) -> None:
    path = tmp_path / "policy.toml"
    path.write_text(
        '[[rules]]\nname = "a"\nfrom = "gpt-4o"\nto = "gpt-4o-mini"\nevaluate = 0.1\n\n'
        '[[rules]]\nname = "b"\nfrom = "gpt-4.1"\nto = "gpt-4.1-mini"\n'
    )
    policy = RulePolicy.load(path, comparators={"a": lambda o, c: 1.0})
    assert policy.comparator("a").name.endswith("<lambda>")
    with pytest.raises(ConfigError, match=r"comparators\['b'\]: expected the name of a rule with"):
        RulePolicy.load(path, comparators={"b": lambda o, c: 1.0})
    with pytest.raises(ConfigError, match=r"comparators\['a'\]: expected a callable"):
        RulePolicy.load(path, comparators={"a": "fuzzy"})


def test_a_custom_policy_with_bad_comparators_fails_at_instrument(tel: Telemetry) -> None:
    class Mine:
        comparators = {"mine": 3}

        def decide(self, call: Any) -> Route | None:
            return None

    with pytest.raises(ConfigError, match=r"policy: comparators\['mine'\]: expected a callable"):
        tel.instrument(policy=Mine())


def test_the_evaluation_settings_are_validated(
    tel: Telemetry, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LLMMETER_EVALUATION_QUEUE_SIZE", "0")
    with pytest.raises(ConfigError, match="LLMMETER_EVALUATION_QUEUE_SIZE: expected a positive"):
        tel.instrument(policy=RulePolicy([rule()]))
    assert not llmmeter._instrumentor.REGISTRY.instrumented  # nothing half-built is left


def test_the_agreement_target_gauge_names_each_evaluating_rule_and_its_mode(
    tel: Telemetry,
) -> None:
    tel.instrument(
        policy=RulePolicy(
            [
                rule(agreement_target=0.9),
                {**rule(mode="shadow"), "name": "other", "from": ["gpt-4.1"]},
                {"name": "plain", "from": ["gpt-4.1-mini"], "to": "gpt-4.1-nano"},
            ]
        )
    )
    targets = {
        (p.attributes["llmmeter.policy.rule"], p.attributes["llmmeter.policy.mode"]): p.value
        for p in tel.points("llmmeter.policy.agreement_target")
    }
    assert targets == {("sentiment", "enforce"): 0.9, ("other", "shadow"): 0.95}


def test_raw_responses_and_the_responses_api_are_evaluated_with_parsed_answers(
    tel: Telemetry, disagreeing: FakeOpenAI, client: Any
) -> None:
    tel.instrument(policy=RulePolicy([rule(mode="shadow")]))
    raw = client.chat.completions.with_raw_response.create(
        model=ORIGINAL, messages=[{"role": "user", "content": "Too slow to ship"}]
    )
    assert raw.parse().choices[0].message.content == "positive"
    assert client.responses.create(model=ORIGINAL, input="Too slow").output_text == "positive"
    for _ in client.responses.create(model=ORIGINAL, input="Great boots", stream=True):
        pass
    wait_until(settled(tel, 3))
    assert total(tel, ERRORS) == 0
    assert total(tel, EVALUATE) == 3
    assert total(tel, AGREEMENT) == 1  # only "Great boots" is answered alike


def test_the_agreement_target_gauge_reports_after_instrumenting_again(tel: Telemetry) -> None:
    tel.instrument(policy=RulePolicy([rule()]))
    llmmeter.uninstrument()
    tel.instrument(policy=RulePolicy([rule(agreement_target=0.8)]))  # the same meter
    values = [p.value for p in tel.points("llmmeter.policy.agreement_target")]
    assert values == [0.8]
