"""llmmeter: every OpenAI SDK call becomes an OpenTelemetry span and metrics, in one line.

Example::

    import llmmeter
    llmmeter.instrument()
"""

from ._api import instrument, price, uninstrument
from ._attribution import attribute
from ._package import __version__
from ._policy import CallView, Policy, Route
from ._pricing import Cost
from ._rules import RulePolicy
from ._task import task
from .exceptions import ConfigError

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
