"""Fault injection on the routing path: each stage of llmmeter's own policy work raises in
turn; the user still gets a good answer, never an exception of ours, and each site warns once.
"""

from __future__ import annotations

import logging
from typing import Any

import pytest

import llmmeter
from llmmeter import _call, _policy, _routing, _rules
from llmmeter.testing import FakeOpenAI
from tests.conftest import make_telemetry

MSG = [{"role": "user", "content": "Classify the sentiment of: I love it"}]
RULE = {"name": "to-mini", "from": "gpt-4o", "to": "gpt-4o-mini", "prompt": [r"(?i)classify"]}


class Boom(Exception):
    """An internal llmmeter failure, injected."""


STAGES: list[tuple[Any, str]] = [
    (_routing.Router, "route"),  # deciding
    (_routing, "CallView"),
    (_policy, "_texts"),  # the lazy prompt window, read by the prompt regex
    (_rules.Rule, "mismatch"),  # a bug in our own rule matching (not the user's policy)
    (_call.Call, "_record_decision"),  # recording the decision
    (_call.Call, "_savings"),  # pricing the saving
    (_call.Call, "_reopen"),  # setting up the fallback
    (_routing.Router, "accepts"),  # running the accept check
]


def _scenarios(client: Any, server: FakeOpenAI) -> dict[str, Any]:
    out: dict[str, Any] = {}
    out["routed"] = client.chat.completions.create(model="gpt-4o", messages=MSG)
    server.fail_next(500, model="gpt-4o-mini")
    out["fallback"] = client.chat.completions.create(model="gpt-4o", messages=MSG)
    server.break_stream_after(0, model="gpt-4o-mini")
    with client.chat.completions.create(model="gpt-4o", messages=MSG, stream=True) as stream:
        out["stream-fallback"] = "".join(
            c.choices[0].delta.content or "" for c in stream if c.choices
        )
    out["responses"] = client.responses.create(model="gpt-4o", input="Classify: ok").output_text
    return out


@pytest.mark.parametrize(("owner", "name"), STAGES, ids=[f"{o.__name__}.{n}" for o, n in STAGES])
def test_internal_failure_on_the_routing_path_still_answers_the_user(
    server: FakeOpenAI,
    openai_module: Any,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    owner: Any,
    name: str,
) -> None:
    reached: list[str] = []

    def failing(*args: Any, **kwargs: Any) -> Any:
        reached.append(name)
        raise Boom("injected")

    tel = make_telemetry()
    # Reject every answer, so that the accept path and its fallback run too.
    tel.instrument(strict=False, policy=llmmeter.RulePolicy(rules=[RULE], accept=lambda r: False))
    try:
        monkeypatch.setattr(owner, name, failing)
        with (
            caplog.at_level(logging.DEBUG, logger="llmmeter"),
            openai_module.OpenAI(base_url=server.base_url, api_key="k", max_retries=0) as client,
        ):
            out = _scenarios(client, server)
    finally:
        llmmeter.uninstrument()
        monkeypatch.undo()
    assert reached, f"the scenarios never reached {name}: the test would prove nothing"
    for key in ("routed", "fallback"):
        assert out[key].choices[0].message.content == server.reply, key
    assert out["stream-fallback"] == server.reply
    assert out["responses"] == server.reply
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert warnings, "the first internal error at a site is logged as a warning"
    sites = [r.args[0] for r in warnings if r.args]
    assert len(sites) == len(set(sites)), "each site warns once; repeats go to debug"
    assert tel.spans(), "telemetry keeps flowing for the calls that could be traced"


def test_stages_exist_where_the_test_patches_them() -> None:
    for owner, name in STAGES:
        assert hasattr(owner, name), (owner, name)
