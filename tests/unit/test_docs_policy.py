"""docs/policy.md: every TOML block loads (or fails with the message the page shows), every
Python block runs against the fake server, the reload warning is the one logged."""

from __future__ import annotations

import logging
import os
import re
from pathlib import Path

import pytest

import llmmeter
from llmmeter._policy import CallView
from llmmeter.testing import FakeOpenAI

DOCS = Path(__file__).resolve().parents[2] / "docs" / "policy.md"


def _blocks() -> list[tuple[str, str]]:
    """(language, text) of each fenced block, with a list item's indentation removed."""
    found = []
    for match in re.finditer(r"^( *)```(\w+)\n(.*?)^ *```$", DOCS.read_text(), re.S | re.M):
        pad = len(match[1])
        found.append((match[2], "".join(line[pad:] + "\n" for line in match[3].splitlines())))
    return found


BLOCKS = _blocks()
TOML = [text for lang, text in BLOCKS if lang == "toml"]
PYTHON = [text for lang, text in BLOCKS if lang == "python"]


def test_toml_blocks_load_or_fail_as_shown(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    failures = 0
    for index, (lang, text) in enumerate(BLOCKS):
        if lang != "toml":
            continue
        Path("policy.toml").write_text(text)
        problem = None
        try:
            llmmeter.RulePolicy.load("policy.toml")
        except llmmeter.ConfigError as exc:
            problem = str(exc)
        if problem is not None:
            failures += 1
            shown_lang, shown = BLOCKS[index + 1]
            assert (shown_lang, shown.strip()) == ("text", problem)
    assert len(TOML) >= 4 and failures == 1


@pytest.mark.parametrize("block", PYTHON, ids=[f"python-{n}" for n in range(len(PYTHON))])
def test_python_blocks_run(
    block: str,
    server: FakeOpenAI,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.chdir(tmp_path)
    Path("policy.toml").write_text(TOML[0])  # the quick start's file
    monkeypatch.setenv("OPENAI_BASE_URL", server.base_url)
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    namespace: dict[str, object] = {"__name__": "docs_example"}
    try:
        exec(compile(block, str(DOCS), "exec"), namespace)
    finally:
        llmmeter.uninstrument()
        for value in namespace.values():  # the examples' clients, closed as an app would
            close = getattr(value, "close", None)
            if type(value).__name__ in ("OpenAI", "AsyncOpenAI") and callable(close):
                close()
    for shown in re.findall(r"print\(.*\)\s*#\s*(\S+?):", block):
        assert capsys.readouterr().out.split()[0] == shown


def test_reload_warning_is_the_one_logged(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.chdir(tmp_path)
    (shown,) = [t.strip() for lang, t in BLOCKS if lang == "text" and "changed but is invalid" in t]
    invalid = next(t for t in TOML if "sample = 25" in t)
    Path("policy.toml").write_text(TOML[0])
    policy = llmmeter.RulePolicy.load("policy.toml", reload_interval=3600)
    Path("policy.toml").write_text(invalid)
    os.utime("policy.toml", ns=(1, 10**18))
    with caplog.at_level(logging.WARNING, logger="llmmeter"):
        policy._reload()  # the watcher thread's check, made now
        policy.decide(CallView(endpoint="chat", operation="chat", model="gpt-4o", kwargs={}))
    assert [r.getMessage() for r in caplog.records] == [shown]


def test_readme_policy_example_loads(tmp_path: Path) -> None:
    readme = (DOCS.parents[1] / "README.md").read_text()
    (block,) = re.findall(r"```toml\n(.*?)```", readme, re.S)
    path = tmp_path / "policy.toml"
    path.write_text(block)
    policy = llmmeter.RulePolicy.load(path)
    assert policy.mode == "shadow"
    assert [rule.name for rule in policy.rules] == ["classification-to-mini"]
