"""No per-call state outlives its call: nothing accumulates over a long-running process."""

from __future__ import annotations

import gc
from typing import Any

from llmmeter._call import Call
from llmmeter._proxies import (
    AsyncRawResponseProxy,
    AsyncStreamProxy,
    RawResponseProxy,
    StreamProxy,
)
from tests.conftest import Telemetry

CHAT = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "Say hello"}]}


def _alive() -> int:
    gc.collect()
    return sum(
        isinstance(
            o, (Call, StreamProxy, AsyncStreamProxy, RawResponseProxy, AsyncRawResponseProxy)
        )
        for o in gc.get_objects()
    )


def test_calls_streams_and_raw_responses_leave_nothing_behind(
    telemetry: Telemetry, client: Any
) -> None:
    before = _alive()
    for i in range(60):
        client.chat.completions.create(**CHAT)
        stream = client.chat.completions.create(**CHAT, stream=True)
        if i % 3 == 0:
            list(stream)
        elif i % 3 == 1:
            next(stream)
            stream.close()
        else:
            next(stream)  # abandoned
        del stream
        # Collect abandoned streams here, at a safe point: with openai 1.x, the cyclic GC
        # finalising an abandoned stream inside httpcore's pool lock deadlocks the bare SDK.
        gc.collect()
        client.chat.completions.with_raw_response.create(**CHAT).parse()
        with client.chat.completions.with_streaming_response.create(**CHAT) as response:
            response.parse()
    del response  # the test's own last reference
    assert _alive() == before
    assert len(telemetry.spans()) == 240
