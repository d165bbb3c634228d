"""``llmmeter.attribute(...)``: who and what calls are for, on every span and, bounded, on metrics.

An application labels a request once (``user``, ``tenant``, ``feature`` and keys of its own)
and every OpenAI call made inside carries the labels on its span. Metrics are another matter:
each distinct value is a new time series, and a million users must never become a million
series. So only the keys the application allows (``LLMMETER_METRIC_ATTRIBUTES``) go on
metrics, and each key takes at most a cap of distinct values per process; past it, new values
go on metrics as :data:`OVERFLOW`, counted (``llmmeter.attribution.overflow``), and the cap
filling is counted too (``llmmeter.attribution.cap_reached``).

The hot path reads one context variable when nothing is set; the merged labels and their span
attributes are built when a block is entered, not per call.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Mapping
from contextvars import ContextVar, Token
from types import MappingProxyType
from typing import TYPE_CHECKING, Final

from . import _semconv as sc
from ._task import Scope

if TYPE_CHECKING:
    from ._guard import Guard
    from ._metrics import Instruments

USER: Final = "user"
TENANT: Final = "tenant"
FEATURE: Final = "feature"
NAMED: Final = {USER: sc.USER_ID, TENANT: sc.LLMMETER_TENANT, FEATURE: sc.LLMMETER_FEATURE}
"""The three keys with a name of their own; any other key is ``llmmeter.attribution.<key>``."""
MAX_VALUE_LENGTH: Final = 256
"""Longest value, in characters: an id or a name, never a prompt."""
MAX_KEYS: Final = 16
"""Keys one request may carry (merged through nesting), so a span's attributes stay bounded."""
KEY_PATTERN: Final = re.compile(r"[a-z][a-z0-9_]{0,31}\Z")
"""An application's own key: it becomes part of an attribute name and a Prometheus label."""
OVERFLOW: Final = "_overflow"
"""The metric value of a key's values past its cap (never a value the application may use)."""
DEFAULT_LIMIT: Final = 100
"""Distinct values of one key that go on metrics in one process."""


def attribute_name(key: str) -> str:
    """The span attribute (and metric label) of an attribution key."""
    return NAMED.get(key) or sc.LLMMETER_ATTRIBUTION_PREFIX + key


def metric_label(key: str) -> str:
    """The Prometheus label of an attribution key (``tenant``: ``llmmeter_tenant``)."""
    return attribute_name(key).replace(".", "_")


def key_problem(key: object) -> str | None:
    """Why ``key`` cannot be an attribution key, or ``None``."""
    if not isinstance(key, str) or not KEY_PATTERN.match(key):
        return (
            "a key of 1-32 lower-case letters, digits and '_', starting with a letter "
            "(user, tenant, feature or the application's own)"
        )
    return None


class Attribution:
    """The labels in force: key to value, and the span attributes they make (built once)."""

    __slots__ = ("span", "values")

    def __init__(self, values: Mapping[str, str]) -> None:
        self.values: Mapping[str, str] = MappingProxyType(dict(values))
        self.span: dict[str, str] = {attribute_name(k): v for k, v in self.values.items()}

    def merged(self, inner: Mapping[str, str]) -> Attribution:
        """This block's labels inside an outer block's: the inner value of a key wins."""
        return Attribution({**self.values, **inner})


current_attribution: ContextVar[Attribution | None] = ContextVar(
    "llmmeter_attribution", default=None
)
"""The labels of the innermost ``llmmeter.attribute`` block of this thread or asyncio task."""


class attribute(Scope):  # lower-case: used like a function, `with llmmeter.attribute(...):`
    """Say who and what the OpenAI calls made inside a block or function are for.

    Every call inside gets the labels as span attributes: ``user`` as ``user.id``, ``tenant``
    as ``llmmeter.tenant``, ``feature`` as ``llmmeter.feature``, any other key ``k`` as
    ``llmmeter.attribution.k``. On metrics only the keys named in
    ``LLMMETER_METRIC_ATTRIBUTES`` (or ``instrument(metric_attributes=...)``), each with a
    cap of distinct values (docs/telemetry.md "Attribution").

    Blocks nest: an inner block adds its keys to the outer block's and its values win for the
    keys both give (a key given ``None`` keeps the outer value). Labels follow asyncio tasks
    and threads started with ``contextvars.copy_context``. Set them once per request, in the
    request handler or its middleware.

    Args:
        user: who the call is for (a user id; it goes on spans, and on metrics only if allowed).
        tenant: the customer or organisation.
        feature: the product feature the call serves (``"search"``, ``"support-chat"``).
        **keys: the application's own keys (``team="growth"``): 1-32 lower-case letters,
            digits and ``_``.

    Values are str (or int, as its decimal string) of 1 to 256 characters.

    Raises:
        TypeError: a value that is not a str or int.
        ValueError: a bad key, an empty or too long value, more than 16 keys, or none at all.

    Example::

        with llmmeter.attribute(user=user.id, tenant=org.slug, feature="search"):
            client.chat.completions.create(model="gpt-4o", messages=msgs)

        @llmmeter.attribute(feature="digest", team="growth")
        async def digest(text: str) -> str: ...
    """

    __slots__ = ("_alone", "values")

    def __init__(
        self,
        *,
        user: str | int | None = None,
        tenant: str | int | None = None,
        feature: str | int | None = None,
        **keys: str | int | None,
    ) -> None:
        given = {USER: user, TENANT: tenant, FEATURE: feature, **keys}
        values: dict[str, str] = {}
        for key, value in given.items():
            problem = key_problem(key)
            if problem is not None:
                raise ValueError(f"llmmeter.attribute: {key!r}: expected {problem}")
            if value is None:
                continue
            values[key] = _checked_value(key, value)
        if not values:
            raise ValueError("llmmeter.attribute: expected at least one key with a value")
        if len(values) > MAX_KEYS:
            raise ValueError(
                f"llmmeter.attribute: expected at most {MAX_KEYS} keys; got {len(values)}"
            )
        self.values: Mapping[str, str] = values
        self._alone = Attribution(values)
        """The labels when no outer block is open: built once, shared by every entry."""

    def _set(self) -> Token[Attribution | None]:
        outer = current_attribution.get()
        if outer is None:
            return current_attribution.set(self._alone)
        merged = outer.merged(self.values)
        if len(merged.values) > MAX_KEYS:  # checked here: only nesting can add keys
            raise ValueError(
                f"llmmeter.attribute: expected at most {MAX_KEYS} keys with the outer blocks' "
                f"keys; got {len(merged.values)}"
            )
        return current_attribution.set(merged)

    def _reset(self, tokens: Token[Attribution | None]) -> None:
        current_attribution.reset(tokens)


def _checked_value(key: str, value: object) -> str:
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise TypeError(f"llmmeter.attribute: {key}: expected a str or int; got {value!r}")
    text = value if isinstance(value, str) else str(value)
    if not 0 < len(text) <= MAX_VALUE_LENGTH:
        raise ValueError(
            f"llmmeter.attribute: {key}: expected 1 to {MAX_VALUE_LENGTH} characters; got "
            f"{len(text)}"
        )
    if text == OVERFLOW:
        raise ValueError(
            f"llmmeter.attribute: {key}: {OVERFLOW!r} is the value metrics give values past "
            "the cap; expected another"
        )
    return text


class MetricAttribution:
    """The keys allowed on metrics and the values each has taken so far, up to the cap.

    A value once admitted keeps its label for the life of the process, and one turned away
    stays :data:`OVERFLOW`: a series never changes meaning halfway. Reads take no lock; the
    lock only orders admissions, so the cap holds exactly under threads.
    """

    __slots__ = (
        "_guard",
        "_instruments",
        "_lock",
        "_overflowed",
        "_seen",
        "keys",
        "limit",
        "names",
    )

    def __init__(
        self, keys: tuple[str, ...], limit: int, instruments: Instruments, guard: Guard
    ) -> None:
        self.keys = keys
        self.limit = limit
        self.names = tuple((key, attribute_name(key)) for key in keys)
        self._instruments = instruments
        self._guard = guard
        self._seen: dict[str, set[str]] = {key: set() for key in keys}
        self._overflowed: set[str] = set()
        self._lock = threading.Lock()

    def labels(self, attribution: Attribution) -> tuple[tuple[str, str], ...]:
        """The metric labels of a call with ``attribution``: allowed keys only, capped."""
        values = attribution.values
        found: list[tuple[str, str]] = []
        for key, name in self.names:
            value = values.get(key)
            if value is None:
                continue
            if value not in self._seen[key]:
                value = self._admit(key, value)
            found.append((name, value))
        return tuple(found)

    def _admit(self, key: str, value: str) -> str:
        seen = self._seen[key]
        with self._lock:
            if value in seen:
                return value
            if len(seen) < self.limit:
                seen.add(value)
                if len(seen) == self.limit:
                    self._instruments.attribution_cap_reached.add(
                        1, {sc.LLMMETER_ATTRIBUTION_KEY: key}
                    )
                return value
        self._instruments.attribution_overflow.add(1, {sc.LLMMETER_ATTRIBUTION_KEY: key})
        if key in self._overflowed:
            return OVERFLOW
        self._overflowed.add(key)
        self._guard.warn_once(
            f"attribution.overflow:{key}",
            f"llmmeter: attribution key {key!r} has taken its cap of {self.limit} distinct "
            f"values on metrics; further values go on metrics as {OVERFLOW!r} (spans keep "
            "every value; LLMMETER_METRIC_ATTRIBUTES_LIMIT raises the cap)",
        )
        return OVERFLOW
