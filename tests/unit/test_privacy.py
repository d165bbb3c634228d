"""Secrets and privacy, checked over everything a whole run exports.

A mixed workload (chat, stream, Responses, embeddings, a routed call, raw responses and a
401) runs with a client whose base URL carries credentials; then every span name, attribute,
event attribute, status, resource attribute, metric point attribute and log record is
scanned for the prompt, the API key, the URL password and the ``Authorization`` value.

httpx accepts credentials in the base URL (``http://user:pass@host/v1``) and sends them as
Basic auth, which *replaces* the SDK's ``Authorization: Bearer`` header: such a client
cannot authenticate to a server that checks keys, so the 401 part of the workload uses a
second server that requires a key and a client with the wrong one.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import llmmeter
from llmmeter import ConfigError
from llmmeter._content import REDACTION_FAILED
from llmmeter.testing import FakeOpenAI
from tests.conftest import Telemetry, make_telemetry
from tests.credentials import (
    AZURE_KEY,
    CORPUS,
    ECHO,
    KEYS,
    OPENAI_KEY,
    OTHER_KEY,
    QUERY,
    URL_PASSWORD,
    URL_USER,
    leaks,
)

SECRET_WORD = "quokka-4417"
PROMPT = f"Please classify this: the {SECRET_WORD} launch codes sit in the blue folder"
API_KEY = "sk-proj-SECRETk3yABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
KEY_TAIL = API_KEY[-8:]
PASSWORD = "pa55word"
EMAIL = "jane.doe@example.com"
CONTENT_KEYS = ("gen_ai.input.messages", "gen_ai.output.messages", "gen_ai.system_instructions")

POLICY = """\
mode = "enforce"

[[rules]]
name = "classify-to-mini"
from = ["gpt-4o"]
to = "gpt-4o-mini"
prompt = ['(?i)\\bclassify\\b']
"""


def _texts(value: Any) -> Iterator[str]:
    if isinstance(value, (list, tuple)):
        for item in value:
            yield from _texts(item)
    elif value is not None:
        yield str(value)


def exported(tel: Telemetry, records: list[logging.LogRecord]) -> list[tuple[str, str]]:
    """(where, text) for every piece of text the run exported, or llmmeter logged."""
    found: list[tuple[str, str]] = []
    for span in tel.spans():
        found.append(("span.name", span.name))
        found.append(("span.status", span.status.description or ""))
        for key, value in (span.attributes or {}).items():
            found.extend((f"span.{key}", text) for text in _texts(value))
        for event in span.events:
            found.append(("event.name", event.name))
            for key, value in (event.attributes or {}).items():
                found.extend((f"event.{key}", text) for text in _texts(value))
        for link in span.links:
            for key, value in (link.attributes or {}).items():
                found.extend((f"link.{key}", text) for text in _texts(value))
        for key, value in span.resource.attributes.items():
            found.extend((f"resource.{key}", text) for text in _texts(value))
    data = tel.reader.get_metrics_data()
    assert data is not None
    for resource_metrics in data.resource_metrics:
        for key, value in resource_metrics.resource.attributes.items():
            found.extend((f"resource.{key}", text) for text in _texts(value))
        for scope_metrics in resource_metrics.scope_metrics:
            for metric in scope_metrics.metrics:
                found.append(("metric.name", metric.name))
                for point in metric.data.data_points:
                    for key, value in (point.attributes or {}).items():
                        found.extend((f"metric.{metric.name}.{key}", t) for t in _texts(value))
    for record in records:
        if record.name != "llmmeter" and not record.name.startswith("llmmeter."):
            continue  # other libraries' logs (httpx logs URLs with their credentials)
        if record.name == "llmmeter.testing":
            continue  # the fake server's access log: the server's side, not llmmeter's
        found.append((f"log.{record.name}", record.getMessage()))
        found.extend((f"log.{record.name}.args", text) for text in _texts(record.args))
        if record.exc_info:
            found.append(
                (f"log.{record.name}.exc", logging.Formatter().formatException(record.exc_info))
            )
        if record.exc_text:
            found.append((f"log.{record.name}.exc_text", record.exc_text))
    return found


def run_workload(server: FakeOpenAI, openai: Any) -> None:
    """Every kind of call, through a client whose base URL embeds credentials."""
    url = server.base_url.replace("http://", f"http://user:{PASSWORD}@")
    messages = [{"role": "user", "content": PROMPT}]
    with openai.OpenAI(base_url=url, api_key=API_KEY, max_retries=0) as client:
        client.chat.completions.create(model="gpt-4o-mini", messages=messages)
        for _ in client.chat.completions.create(
            model="gpt-4o-mini", messages=messages, stream=True
        ):
            pass
        client.responses.create(model="gpt-4o-mini", input=PROMPT, instructions=PROMPT)
        client.embeddings.create(model="text-embedding-3-small", input=PROMPT)
        client.chat.completions.create(model="gpt-4o", messages=messages)  # routed
        raw = client.chat.completions.with_raw_response.create(
            model="gpt-4o-mini", messages=messages
        )
        raw.parse()
        with client.chat.completions.with_streaming_response.create(
            model="gpt-4o-mini", messages=messages
        ) as response:
            response.read()
        server.fail_next(500)
        with pytest.raises(openai.InternalServerError):
            client.chat.completions.create(model="gpt-4o-mini", messages=messages)
    with (
        FakeOpenAI(api_key="sk-the-right-key") as guarded,
        openai.OpenAI(base_url=guarded.base_url, api_key=API_KEY, max_retries=0) as wrong,
        pytest.raises(openai.AuthenticationError) as caught,
    ):
        wrong.chat.completions.create(model="gpt-4o-mini", messages=messages)
    # The API echoes the key, masked: the scan below must also catch what survives masking.
    assert KEY_TAIL[-4:] in str(caught.value)


@pytest.fixture
def policy_file(tmp_path: Path) -> Path:
    path = tmp_path / "policy.toml"
    path.write_text(POLICY)
    return path


@pytest.fixture
def logs(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    caplog.set_level(logging.DEBUG)
    caplog.set_level(logging.DEBUG, logger="llmmeter")
    return caplog


@pytest.fixture
def tel() -> Iterator[Telemetry]:
    telemetry = make_telemetry()
    yield telemetry
    llmmeter.uninstrument()
    telemetry.meter_provider.shutdown()
    telemetry.tracer_provider.shutdown()


def _secrets() -> dict[str, str]:
    return {
        "api key": API_KEY,
        "api key tail": KEY_TAIL[-4:] + "",
        "api key body": API_KEY[8:20],
        "url password": PASSWORD,
        "authorization": f"Bearer {API_KEY}",
        "basic auth": "dXNlcjpwYTU1d29yZA",  # base64 of user:pa55word
    }


def test_a_whole_run_exports_no_secret_and_no_content_by_default(
    server: FakeOpenAI,
    openai_module: Any,
    tel: Telemetry,
    policy_file: Path,
    logs: pytest.LogCaptureFixture,
) -> None:
    tel.instrument(policy=policy_file)
    run_workload(server, openai_module)

    spans = tel.spans()
    assert len(spans) >= 9
    assert any(s.attributes and s.attributes.get("llmmeter.policy.rule") for s in spans) or any(
        "gpt-4o-mini" in s.name for s in spans
    )
    assert any(s.status.description for s in spans)  # the errors were recorded
    texts = exported(tel, logs.records)
    assert texts
    # The scan is not vacuous: the secrets were there to leak (httpx logs the URL as given).
    assert any(PASSWORD in r.getMessage() for r in logs.records if r.name.startswith("httpx"))
    for label, secret in {**_secrets(), "prompt": SECRET_WORD}.items():
        leaks = [(where, text) for where, text in texts if secret in text]
        assert not leaks, f"{label} leaked: {leaks}"
    assert not any(where.startswith(tuple(f"span.{k}" for k in CONTENT_KEYS)) for where, _ in texts)


def test_with_content_on_the_prompt_is_only_in_content_attributes(
    server: FakeOpenAI,
    openai_module: Any,
    tel: Telemetry,
    policy_file: Path,
    logs: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("LLMMETER_CONTENT_MAX_LENGTH", "400")
    tel.instrument(policy=policy_file, capture_content=True)
    run_workload(server, openai_module)

    texts = exported(tel, logs.records)
    for label, secret in _secrets().items():
        leaks = [(where, text) for where, text in texts if secret in text]
        assert not leaks, f"{label} leaked: {leaks}"
    where_prompt = {where for where, text in texts if SECRET_WORD in text}
    assert where_prompt == {"span.gen_ai.input.messages", "span.gen_ai.system_instructions"}
    for where, text in texts:
        if where.removeprefix("span.") in CONTENT_KEYS:
            assert len(text) <= 400


def test_content_longer_than_the_limit_is_truncated(
    client: Any, tel: Telemetry, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LLMMETER_CONTENT_MAX_LENGTH", "100")
    tel.instrument(capture_content=True)
    client.chat.completions.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": PROMPT * 20}]
    )
    attrs = tel.span().attributes or {}
    text = attrs["gen_ai.input.messages"]
    assert isinstance(text, str)
    assert len(text) == 100
    assert text.endswith("...[truncated]")


def _redact_email(text: str) -> str:
    return text.replace(EMAIL, "[email]")


def test_redact_hook_applies_to_prompts_completions_instructions_and_tools(
    server: FakeOpenAI, client: Any, tel: Telemetry
) -> None:
    server.reply = f"Sure, I will write to {EMAIL} today."
    tel.instrument(capture_content=True, redact=_redact_email)
    client.chat.completions.create(
        model="gpt-4o-mini",
        messages=[
            {"role": "system", "content": f"Never email {EMAIL}"},
            {"role": "user", "content": [{"type": "text", "text": f"Mail {EMAIL}"}]},
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {
                        "id": "call_1",
                        "type": "function",
                        "function": {"name": "send", "arguments": json.dumps({"to": EMAIL})},
                    }
                ],
            },
            {"role": "tool", "tool_call_id": "call_1", "content": f"sent to {EMAIL}"},
        ],
    )
    for _ in client.chat.completions.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": EMAIL}], stream=True
    ):
        pass
    client.responses.create(model="gpt-4o-mini", input=f"to {EMAIL}", instructions=EMAIL)

    spans = tel.spans()
    assert len(spans) == 3
    seen = set()
    for span in spans:
        attrs = span.attributes or {}
        for key in CONTENT_KEYS:
            if key in attrs:
                seen.add(key)
                assert EMAIL not in str(attrs[key])
                assert "[email]" in str(attrs[key])
    assert seen == set(CONTENT_KEYS)
    chat = json.loads(str(spans[0].attributes["gen_ai.input.messages"]))  # type: ignore[index]
    assert chat[2]["parts"][-1]["arguments"] == '{"to": "[email]"}'
    assert chat[2]["parts"][-1]["name"] == "send"  # names and ids are not content
    assert chat[3]["parts"][0]["response"] == "sent to [email]"


def test_redaction_runs_before_truncation(
    client: Any, tel: Telemetry, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LLMMETER_CONTENT_MAX_LENGTH", "200")
    tel.instrument(capture_content=True, redact=lambda s: s.replace(EMAIL, "[email]"))
    # The email straddles the cut: truncating first would leave a fragment of it.
    prompt = "x" * 130 + EMAIL
    client.chat.completions.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": prompt}]
    )
    text = str((tel.span().attributes or {})["gen_ai.input.messages"])
    assert "jane" not in text
    assert "[email]" in text


def test_redact_is_not_called_when_content_is_off(client: Any, tel: Telemetry) -> None:
    seen: list[str] = []

    def hook(text: str) -> str:
        seen.append(text)
        return text

    tel.instrument(redact=hook)
    client.chat.completions.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": PROMPT}]
    )
    assert seen == []
    assert not any(k in (tel.span().attributes or {}) for k in CONTENT_KEYS)


def test_a_raising_hook_drops_the_content_logs_once_and_the_call_goes_on(
    client: Any, tel: Telemetry, logs: pytest.LogCaptureFixture
) -> None:
    def hook(text: str) -> str:
        raise ValueError(f"cannot redact {text}")

    tel.instrument(capture_content=True, redact=hook)  # strict: internal errors would raise
    results = [
        client.chat.completions.create(
            model="gpt-4o-mini", messages=[{"role": "user", "content": PROMPT}]
        )
        for _ in range(3)
    ]
    assert all(r.choices[0].message.content for r in results)
    spans = tel.spans()
    assert len(spans) == 3
    for span in spans:
        attrs = span.attributes or {}
        assert span.status.is_ok
        messages = json.loads(str(attrs["gen_ai.input.messages"]))
        assert messages[0]["parts"][0]["content"] == REDACTION_FAILED
        output = json.loads(str(attrs["gen_ai.output.messages"]))
        assert output[0]["parts"][0]["content"] == REDACTION_FAILED
    failures = [r for r in logs.records if "redact hook failed" in r.getMessage()]
    assert len(failures) == 1
    assert failures[0].levelno == logging.WARNING
    assert SECRET_WORD not in failures[0].getMessage()  # the exception message quotes the text
    assert failures[0].exc_info is None


def test_a_hook_returning_a_non_string_drops_the_content(client: Any, tel: Telemetry) -> None:
    tel.instrument(capture_content=True, redact=lambda s: None)  # type: ignore[arg-type,return-value]
    client.chat.completions.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": PROMPT}]
    )
    text = str((tel.span().attributes or {})["gen_ai.input.messages"])
    assert SECRET_WORD not in text
    assert REDACTION_FAILED in text


@pytest.mark.parametrize("bad", ["[email]", 42, {"a": "b"}])
def test_a_non_callable_redact_is_a_config_error(bad: Any) -> None:
    with pytest.raises(ConfigError, match="argument redact: expected a callable"):
        llmmeter.instrument(redact=bad)


# --- a corpus of credentials, planted everywhere they can enter --------------------------------

MESSAGES = [{"role": "user", "content": PROMPT}]


def plant_everywhere(server: FakeOpenAI, openai: Any) -> list[BaseException]:
    """Every credential of the corpus, everywhere it can enter a call: each key shape as a
    client's key (rejected: the 401 echoes it, masked), a base URL with userinfo, credential
    query parameters and headers, and server errors quoting all of them. Returns what the SDK
    raised, to show there was something to leak."""
    caught: list[BaseException] = []
    with FakeOpenAI(api_key="sk-the-right-key") as guarded:
        for key in KEYS:
            with (
                openai.OpenAI(base_url=guarded.base_url, api_key=key, max_retries=0) as wrong,
                pytest.raises(openai.AuthenticationError) as rejected,
            ):
                wrong.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
            assert key[-4:] in str(rejected.value)
    url = server.base_url.replace("http://", f"http://{URL_USER}:{URL_PASSWORD}@")
    with openai.OpenAI(
        base_url=url,
        api_key=OPENAI_KEY,
        max_retries=0,
        default_query=QUERY,
        default_headers={"api-key": AZURE_KEY, "x-api-key": OTHER_KEY},
    ) as client:
        client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
        for _ in client.chat.completions.create(
            model="gpt-4o-mini", messages=MESSAGES, stream=True
        ):
            pass
        calls = [
            lambda: client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES),
            lambda: client.chat.completions.create(
                model="gpt-4o-mini", messages=MESSAGES, stream=True
            ),
            lambda: client.responses.create(model="gpt-4o-mini", input=PROMPT),
            lambda: client.embeddings.create(model="text-embedding-3-small", input=PROMPT),
        ]
        for status, call in zip((400, 500, 401, 429), calls, strict=True):
            server.fail_next(status, message=f"{ECHO}; prompt {PROMPT!r}")
            with pytest.raises(openai.APIStatusError) as failed:
                call()
            caught.append(failed.value)
    assert all(len(leaks(str(error))) == len(CORPUS) for error in caught)
    return caught


@pytest.mark.parametrize("content", [False, True], ids=["content-off", "content-on"])
def test_no_credential_of_the_corpus_reaches_spans_metrics_or_logs(
    server: FakeOpenAI,
    openai_module: Any,
    tel: Telemetry,
    logs: pytest.LogCaptureFixture,
    content: bool,
) -> None:
    tel.instrument(capture_content=content)
    plant_everywhere(server, openai_module)

    texts = exported(tel, logs.records)
    found = [(where, name) for where, text in texts for name in leaks(text)]
    assert found == []
    messages = [
        str((event.attributes or {})["exception.message"])
        for span in tel.spans()
        for event in span.events
        if event.name == "exception"
    ]
    assert len(messages) == len(KEYS) + 4
    # With content on the servers' texts are recorded (scrubbed); off, never.
    assert any("upstream refused" in m for m in messages) is content
    assert any(SECRET_WORD in text for where, text in texts if "exception" in where) is content


def test_no_credential_reaches_llmmeter_logs_from_an_internal_error_or_a_policy_hook(
    client: Any, tel: Telemetry, logs: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Exceptions quoting credentials, logged with their traceback: llmmeter's own failure
    (production mode: logged, swallowed) and the user's policy raising."""
    from llmmeter import _call

    class LeakyPolicy:
        def decide(self, call: Any) -> None:
            raise ValueError(f"policy saw {ECHO}")

    def fails(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError(f"internal: {ECHO}")

    tel.instrument(strict=False, policy=LeakyPolicy())
    monkeypatch.setattr(_call, "read_response", fails)
    client.chat.completions.create(model="gpt-4o", messages=MESSAGES)

    shown = logging.Formatter("%(levelname)s %(name)s %(message)s")
    written = [shown.format(r) for r in logs.records if r.name == "llmmeter"]
    assert any("ValueError: policy saw upstream refused" in text for text in written)
    assert any("RuntimeError: internal: upstream refused" in text for text in written)
    assert [name for text in written for name in leaks(text)] == []


def test_the_command_line_prints_no_credential_a_server_echoed(
    capsys: pytest.CaptureFixture[str], policy_file: Path
) -> None:
    """A Prometheus (or a proxy before it) refusing the query, quoting credentials back: the
    command's one error line names the failure without them."""
    import threading
    from http.server import BaseHTTPRequestHandler

    from tests.cli_runner import run_cli
    from tests.local_http import QuietHTTPServer

    class Refusing(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = json.dumps({"status": "error", "errorType": "auth", "error": ECHO}).encode()
            self.send_response(401)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = QuietHTTPServer(("127.0.0.1", 0), Refusing)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://{URL_USER}:{URL_PASSWORD}@127.0.0.1:{server.server_address[1]}"
        code, out, err = run_cli(capsys, "policy", "status", str(policy_file), "--prometheus", url)
    finally:
        server.shutdown()
        server.server_close()
    assert (code, out) == (2, "")
    assert err.startswith("llmmeter: error: cannot read the fleet's counters from Prometheus")
    assert "HTTP 401: upstream refused" in err  # the server's words are there, scrubbed
    assert leaks(err) == []


# --- files are data ------------------------------------------------------------------------


CODE_LIKE = [
    "__import__('os').system('touch {sentinel}')",
    "{{ ''.__class__.__mro__[1].__subclasses__() }}",
    "${{touch {sentinel}}}",
    "$(touch {sentinel})",
    "`touch {sentinel}`",
    "!!python/object/apply:os.system ['touch {sentinel}']",
]


def _assert_data_only(load: Any, path: Path, sentinel: Path) -> None:
    with contextlib.suppress(ConfigError):
        load(path)
    assert not sentinel.exists()


@pytest.mark.parametrize("payload", CODE_LIKE)
def test_policy_files_are_data_not_code(tmp_path: Path, payload: str) -> None:
    from llmmeter import RulePolicy

    sentinel = tmp_path / "pwned"
    text = payload.format(sentinel=sentinel)
    path = tmp_path / "policy.toml"
    path.write_text(
        f"mode = {json.dumps(text)}\n\n"
        "[[rules]]\n"
        f"name = {json.dumps(text)}\n"
        'from = ["gpt-4o"]\n'
        'to = "gpt-4o-mini"\n'
        f"tasks = [{json.dumps(text)}]\n"
    )
    _assert_data_only(RulePolicy.load, path, sentinel)
    # Perl-style code blocks are not Python regex syntax: a ConfigError, never run.
    path.write_text(
        "[[rules]]\nname = 'safe'\nfrom = ['gpt-4o']\nto = 'gpt-4o-mini'\n"
        f"prompt = [{json.dumps('(?{ system(' + repr(str(sentinel)) + ') })')}]\n"
    )
    with pytest.raises(ConfigError, match="prompt"):
        RulePolicy.load(path)
    assert not sentinel.exists()
    # The same text where any string is allowed loads as that plain string, inert.
    pattern = re.escape(text)
    path.write_text(
        "[[rules]]\nname = 'safe'\nfrom = ['gpt-4o']\nto = 'gpt-4o-mini'\n"
        f"prompt = [{json.dumps(pattern)}]\n"
    )
    policy = RulePolicy.load(path)
    assert not sentinel.exists()
    assert [rule.prompt for rule in policy.rules] == [(pattern,)]


@pytest.mark.parametrize("payload", CODE_LIKE)
def test_prices_files_are_data_not_code(tmp_path: Path, payload: str) -> None:
    from llmmeter._pricing import PriceTable

    sentinel = tmp_path / "pwned"
    text = payload.format(sentinel=sentinel)
    path = tmp_path / "prices.toml"
    path.write_text(
        f"[models.{json.dumps(text)}]\n"
        f"input = {json.dumps(text)}\n"
        f"output = {json.dumps(text)}\n"
        f"[aliases]\n{json.dumps(text)} = {json.dumps(text)}\n"
    )
    _assert_data_only(lambda p: PriceTable.load(str(p)), path, sentinel)
    assert not os.path.exists(sentinel)
