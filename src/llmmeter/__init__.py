"""llmmeter: every OpenAI SDK call becomes an OpenTelemetry span and metrics, in one line.

Example::

    import llmmeter
    llmmeter.instrument()
"""

from typing import TYPE_CHECKING as _TYPE_CHECKING

from ._api import instrument, price, uninstrument
from ._attribution import attribute
from ._package import __version__
from ._policy import CallView, Policy, Route
from ._pricing import Cost
from ._task import task
from .exceptions import ConfigError

if _TYPE_CHECKING:
    from ._rules import RulePolicy

__all__ = [
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


def __getattr__(name: str) -> object:
    """``RulePolicy`` on first use: the rule-file machinery (rules, comparators, prompt
    patterns; the spend poller) cost about a third of start-up's instructions, and a process
    without a policy never needs it."""
    if name == "RulePolicy":
        from ._rules import RulePolicy

        return RulePolicy
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
