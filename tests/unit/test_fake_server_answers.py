"""``FakeOpenAI.answer``: per-model (and per-prompt) replies, through the official SDK.

The reply "The answer is negative." counts 5 tokens by the documented rule ("The",
" answer", " is", " negative", "."); the default reply counts 22.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

import pytest

from llmmeter.testing import DEFAULT_REPLY, FakeOpenAI

openai = pytest.importorskip("openai")

NEGATIVE = "The answer is negative."
NEGATIVE_TOKENS = 5
REFUND = [
    {"role": "system", "content": "Classify the sentiment."},
    {"role": "user", "content": [{"type": "text", "text": "I want a refund."}]},
]
THANKS = [{"role": "user", "content": "Thanks, all good."}]


@pytest.fixture
def client(server: FakeOpenAI) -> Iterator[Any]:
    client = openai.OpenAI(base_url=server.base_url, api_key="sk-test", max_retries=0)
    yield client
    client.close()


def chat(client: Any, model: str, messages: list[dict[str, Any]], **options: Any) -> str:
    content: str = (
        client.chat.completions.create(model=model, messages=messages, **options)
        .choices[0]
        .message.content
    )
    return content


def test_only_the_named_model_answers_differently(client: Any, server: FakeOpenAI) -> None:
    server.answer("gpt-4o-mini", NEGATIVE)
    assert chat(client, "gpt-4o-mini", THANKS) == NEGATIVE
    assert chat(client, "gpt-4o", THANKS) == DEFAULT_REPLY


def test_a_prompt_regex_narrows_the_rule_to_matching_requests(
    client: Any, server: FakeOpenAI
) -> None:
    server.answer("gpt-4o-mini", NEGATIVE, prompt=r"(?i)\brefund\b")
    assert chat(client, "gpt-4o-mini", REFUND) == NEGATIVE
    assert chat(client, "gpt-4o-mini", THANKS) == DEFAULT_REPLY
    assert chat(client, "gpt-4o", REFUND) == DEFAULT_REPLY


def test_the_first_matching_rule_in_the_order_added_wins(client: Any, server: FakeOpenAI) -> None:
    server.answer("gpt-4o-mini", "narrow", prompt="refund")
    server.answer("gpt-4o-mini", "broad")
    server.answer("gpt-4o-mini", "never", prompt="refund")
    assert chat(client, "gpt-4o-mini", REFUND) == "narrow"
    assert chat(client, "gpt-4o-mini", THANKS) == "broad"


def test_globs_and_snapshots_match_but_a_prefix_alone_does_not(
    client: Any, server: FakeOpenAI
) -> None:
    server.answer("gpt-4o-mini-2024-07-18", "by snapshot")
    assert chat(client, "gpt-4o-mini", THANKS) == "by snapshot"
    server.reset()
    server.answer("gpt-4o", "four-o")
    assert chat(client, "gpt-4o-mini", THANKS) == DEFAULT_REPLY
    assert chat(client, "gpt-4o-2024-05-13", THANKS) == DEFAULT_REPLY
    server.answer("gpt-4o-2024-*", "dated")
    assert chat(client, "gpt-4o-2024-05-13", THANKS) == "dated"
    assert chat(client, "gpt-4o", THANKS) == "four-o"


def test_chat_usage_and_stream_follow_the_scripted_reply(client: Any, server: FakeOpenAI) -> None:
    server.answer("gpt-4o-mini", NEGATIVE)
    plain = client.chat.completions.create(model="gpt-4o-mini", messages=THANKS)
    assert plain.usage.completion_tokens == NEGATIVE_TOKENS
    chunks = list(
        client.chat.completions.create(
            model="gpt-4o-mini",
            messages=THANKS,
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    pieces = [
        c.choices[0].delta.content for c in chunks if c.choices and c.choices[0].delta.content
    ]
    assert pieces == ["The", " answer", " is", " negative", "."]
    assert chunks[-1].usage.completion_tokens == NEGATIVE_TOKENS


def test_json_object_mode_wraps_the_scripted_reply(client: Any, server: FakeOpenAI) -> None:
    server.answer("gpt-4o-mini", "negative")
    content = chat(client, "gpt-4o-mini", THANKS, response_format={"type": "json_object"})
    assert json.loads(content) == {"message": "negative"}


def test_responses_match_instructions_and_input_and_stream(client: Any, server: FakeOpenAI) -> None:
    server.answer("gpt-4o-mini", NEGATIVE, prompt="^Be terse\nI want a refund$")
    result = client.responses.create(
        model="gpt-4o-mini", instructions="Be terse", input="I want a refund"
    )
    assert result.output_text == NEGATIVE
    assert result.usage.output_tokens == NEGATIVE_TOKENS
    assert client.responses.create(model="gpt-4o-mini", input="refund").output_text == (
        DEFAULT_REPLY
    )
    events = list(
        client.responses.create(
            model="gpt-4o-mini",
            instructions="Be terse",
            input=[{"role": "user", "content": "I want a refund"}],
            stream=True,
        )
    )
    assert events[-1].type == "response.completed"
    assert events[-1].response.output_text == NEGATIVE
    deltas = "".join(e.delta for e in events if e.type == "response.output_text.delta")
    assert deltas == NEGATIVE


def test_legacy_completions_match_the_prompt(client: Any, server: FakeOpenAI) -> None:
    server.answer("gpt-3.5-turbo-instruct", "No.", prompt="refund")
    result = client.completions.create(model="gpt-3.5-turbo-instruct", prompt="A refund?")
    assert result.choices[0].text == "No."
    assert result.usage.completion_tokens == 2
    other = client.completions.create(model="gpt-3.5-turbo-instruct", prompt="Hello")
    assert other.usage.completion_tokens == 16  # the default reply, cut at max_tokens 16


def test_an_azure_deployment_matches_by_name_and_by_the_model_it_serves(
    server: FakeOpenAI,
) -> None:
    server.add_deployment("prod-mini", "gpt-4o-mini")
    server.answer("gpt-4o-mini", "served")
    server.answer("prod-*", "deployment")
    with openai.AzureOpenAI(
        azure_endpoint=server.url, api_key="k", api_version="2024-10-21", max_retries=0
    ) as azure:
        assert chat(azure, "prod-mini", THANKS) == "served"
        assert chat(azure, "prod-other", THANKS) == "deployment"


def test_reset_forgets_the_answers(client: Any, server: FakeOpenAI) -> None:
    server.answer("*", NEGATIVE)
    assert chat(client, "gpt-4o", THANKS) == NEGATIVE
    server.reset()
    assert chat(client, "gpt-4o", THANKS) == DEFAULT_REPLY


def test_a_compiled_pattern_is_accepted(client: Any, server: FakeOpenAI) -> None:
    server.answer("gpt-4o", "yes", prompt=re.compile("THANKS", re.IGNORECASE))
    assert chat(client, "gpt-4o", THANKS) == "yes"


@pytest.mark.parametrize(
    ("args", "kwargs", "error", "message"),
    [
        (("", "x"), {}, ValueError, "model must be a non-empty model name or glob"),
        (("gpt-4o", 3), {}, TypeError, "reply must be a str, got int"),
        (("gpt-4o", "x"), {"prompt": "("}, ValueError, "prompt must be a valid regex"),
        (("gpt-4o", "x"), {"prompt": 5}, TypeError, "prompt must be a regex"),
    ],
)
def test_bad_rules_are_refused_when_added(
    server: FakeOpenAI, args: tuple[Any, ...], kwargs: dict[str, Any], error: type, message: str
) -> None:
    with pytest.raises(error, match=re.escape(message)):
        server.answer(*args, **kwargs)
