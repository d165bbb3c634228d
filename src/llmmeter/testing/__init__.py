"""Test helpers for code that calls OpenAI: a fake OpenAI server over real HTTP.

``FakeOpenAI`` answers the official ``openai`` SDK on 127.0.0.1 with bodies and event
streams shaped like the real API's (checked against recorded exchanges), and lets a
test script failures and latency and inspect what was sent; ``FakeOpenAI.client_as`` gives
a client that keeps another provider's base URL and is answered as that provider would
(``FakeOpenAI.providers``). Importing this module does not import ``openai``. See docs/testing.md.
"""

from ._server import FakeOpenAI, RecordedRequest, client_as
from ._text import DEFAULT_REPLY

__all__ = ["DEFAULT_REPLY", "FakeOpenAI", "RecordedRequest", "client_as"]
