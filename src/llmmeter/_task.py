"""``llmmeter.task(...)``: label the calls made inside a block or function."""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from contextvars import ContextVar, Token
from types import TracebackType
from typing import Any, TypeVar, cast

F = TypeVar("F", bound=Callable[..., Any])

current_task: ContextVar[str | None] = ContextVar("llmmeter_task", default=None)
"""The innermost active task label of this thread or asyncio task."""

_entered: ContextVar[tuple[Token[str | None], ...]] = ContextVar("llmmeter_task_tokens", default=())
"""Reset tokens of the ``with`` blocks open in this context, so one ``task`` object can be
shared by threads and tasks (tokens must be reset in the context that created them)."""


class task:  # lower-case: used like a function, `with llmmeter.task("classify"):`
    """Label every OpenAI call made inside a ``with`` block or a decorated function.

    The label becomes the ``llmmeter.task`` span attribute and a metric label, so cost and
    latency can be broken down by what the application was doing. Labels nest (innermost
    wins) and follow asyncio tasks and threads started with ``contextvars.copy_context``.

    Args:
        name: a short, bounded label such as ``"classify"`` (never a user id or a prompt).

    Example::

        with llmmeter.task("classify"):
            client.chat.completions.create(model="gpt-4o", messages=msgs)

        @llmmeter.task("summarize")
        async def summarize(text: str) -> str: ...
    """

    __slots__ = ("name",)

    def __init__(self, name: str) -> None:
        if not isinstance(name, str) or not name:
            raise TypeError(f"llmmeter.task: expected a non-empty str name; got {name!r}")
        self.name = name

    def __enter__(self) -> task:
        _entered.set((*_entered.get(), current_task.set(self.name)))
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        *rest, token = _entered.get()
        _entered.set(tuple(rest))
        current_task.reset(token)

    def __call__(self, func: F) -> F:
        name = self.name
        if inspect.iscoroutinefunction(func):

            @functools.wraps(func)
            async def async_labelled(*args: Any, **kwargs: Any) -> Any:
                token = current_task.set(name)
                try:
                    return await func(*args, **kwargs)
                finally:
                    current_task.reset(token)

            return cast(F, async_labelled)

        @functools.wraps(func)
        def labelled(*args: Any, **kwargs: Any) -> Any:
            token = current_task.set(name)
            try:
                return func(*args, **kwargs)
            finally:
                current_task.reset(token)

        return cast(F, labelled)
