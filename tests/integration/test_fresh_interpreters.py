"""What only a fresh interpreter shows: imports, hash seeds, the interpreter's exit."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

from llmmeter._policy import stable_fraction
from llmmeter.testing import FakeOpenAI
from tests.prometheus import app_env
from tests.unit.test_policy_rules import STABLE_CASES
from tests.unit.test_shadow_evaluation import TARGET


def test_public_surface_is_sorted_and_importing_it_leaves_openai_unimported() -> None:
    import llmmeter.testing

    assert llmmeter.testing.__all__ == sorted(llmmeter.testing.__all__)
    code = "import sys, llmmeter.testing; print('openai' in sys.modules)"
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "False"


def test_stable_fraction_does_not_depend_on_python_hash_seed() -> None:
    code = (
        "from llmmeter._policy import stable_fraction\n"
        f"cases = {STABLE_CASES!r}\n"
        "print(hash('classify'))\n"
        "print([stable_fraction(r, k).hex() for r, k in cases])\n"
    )
    outputs = [
        subprocess.run(
            [sys.executable, "-c", code],
            env={**os.environ, "PYTHONHASHSEED": seed},
            capture_output=True,
            text=True,
            check=True,
            timeout=60,
        ).stdout.splitlines()
        for seed in ("1", "2")
    ]
    assert outputs[0][0] != outputs[1][0]  # the salted hash() differs between the two...
    expected = str([stable_fraction(r, k).hex() for r, k in STABLE_CASES])
    assert outputs[0][1] == outputs[1][1] == expected  # ...stable_fraction does not


EXITING_APP = """
import os, time
import openai, llmmeter

llmmeter.instrument(policy=llmmeter.RulePolicy([{
    "name": "sentiment", "from": ["gpt-4o"], "to": "gpt-4o-mini", "evaluate": 1.0,
    "mode": "shadow",
}]))
client = openai.OpenAI(base_url=os.environ["FAKE_BASE_URL"], api_key="sk-test", max_retries=0)
for prompt in ("one", "two", "three"):
    client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": prompt}])
print("CALLS-DONE", flush=True)
"""


def test_interpreter_exit_drops_pending_evaluations_and_does_not_wait_for_them(
    fake: FakeOpenAI,
) -> None:
    fake.reset()
    fake.set_latency(response=3600.0, model=TARGET)  # evaluations that would never finish
    try:
        done = subprocess.run(
            [sys.executable, "-c", textwrap.dedent(EXITING_APP)],
            capture_output=True,
            text=True,
            timeout=180,  # a hang fails here, however loaded the machine
            env={
                **app_env(),
                "FAKE_BASE_URL": fake.base_url,
                "OTEL_TRACES_EXPORTER": "none",
                "OTEL_METRICS_EXPORTER": "none",
            },
            check=False,
        )
    finally:
        fake.reset()
    assert done.returncode == 0, done.stderr
    assert "CALLS-DONE" in done.stdout
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert lines == [
        "llmmeter: 3 shadow evaluation(s) still pending were dropped at exit (counted as "
        "llmmeter.evaluation.dropped, reason shutdown)"
    ], done.stderr
