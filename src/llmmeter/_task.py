"""``llmmeter.task(...)``: label the calls made inside a block or function."""

from __future__ import annotations

import functools
import inspect
from abc import ABC, abstractmethod
from collections.abc import AsyncGenerator, Callable, Generator
from contextvars import ContextVar, Token
from types import TracebackType
from typing import Any, Self, TypeVar, cast

F = TypeVar("F", bound=Callable[..., Any])

current_task: ContextVar[str | None] = ContextVar("llmmeter_task", default=None)
"""The innermost active task label of this thread or asyncio task."""

current_key: ContextVar[str | None] = ContextVar("llmmeter_task_key", default=None)
"""The innermost stickiness key given to ``task(..., key=...)``; inner tasks without a key keep
their outer task's key (the conversation stays the same)."""

_Tokens = tuple[Token[str | None], Token[str | None] | None]

_entered: ContextVar[tuple[Any, ...]] = ContextVar("llmmeter_task_tokens", default=())
"""Reset tokens of the ``with`` blocks open in this context, so one label object can be
shared by threads and tasks (tokens must be reset in the context that created them). Blocks
close in the reverse order they open, so the last entry is always the closing block's."""


class Scope(ABC):
    """A label set while a ``with`` block or a decorated function runs, kept in context
    variables (so it follows asyncio tasks and ``contextvars.copy_context``): the ``with``,
    decorator, generator and async machinery that :class:`task` and ``llmmeter.attribute``
    share. Subclasses say what setting and resetting their label means."""

    __slots__ = ()

    @abstractmethod
    def _set(self) -> Any:
        """Set the label; return what :meth:`_reset` needs to undo it."""

    @abstractmethod
    def _reset(self, tokens: Any) -> None:
        """Undo what :meth:`_set` did, given what it returned."""

    def __enter__(self) -> Self:
        _entered.set((*_entered.get(), self._set()))
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        *rest, tokens = _entered.get()
        _entered.set(tuple(rest))
        self._reset(tokens)

    def __call__(self, func: F) -> F:
        if inspect.isasyncgenfunction(func):
            return cast(F, self._async_generator(func))
        if inspect.isgeneratorfunction(func):
            return cast(F, self._generator(func))
        if inspect.iscoroutinefunction(func):

            @functools.wraps(func)
            async def async_labelled(*args: Any, **kwargs: Any) -> Any:
                tokens = self._set()
                try:
                    return await func(*args, **kwargs)
                finally:
                    self._reset(tokens)

            return cast(F, async_labelled)

        @functools.wraps(func)
        def labelled(*args: Any, **kwargs: Any) -> Any:
            tokens = self._set()
            try:
                return func(*args, **kwargs)
            finally:
                self._reset(tokens)

        return cast(F, labelled)

    def _generator(self, func: Callable[..., Generator[Any, Any, Any]]) -> Callable[..., Any]:
        """Label the generator's own steps only: between them the caller runs unlabelled,
        as a ``with`` block inside the generator would not manage (it would leak the label
        to the caller at each ``yield``)."""

        @functools.wraps(func)
        def labelled(*args: Any, **kwargs: Any) -> Generator[Any, Any, Any]:
            tokens = self._set()
            try:
                inner = func(*args, **kwargs)
            finally:
                self._reset(tokens)
            sent: Any = None
            thrown: BaseException | None = None
            while True:
                tokens = self._set()
                try:
                    item = inner.send(sent) if thrown is None else inner.throw(thrown)
                except StopIteration as stop:
                    return stop.value
                finally:
                    self._reset(tokens)
                thrown = None
                try:
                    sent = yield item
                except GeneratorExit:
                    inner.close()
                    raise
                except BaseException as exc:
                    thrown = exc

        return labelled

    def _async_generator(
        self, func: Callable[..., AsyncGenerator[Any, Any]]
    ) -> Callable[..., AsyncGenerator[Any, Any]]:
        """As :meth:`_generator`, for ``async def`` functions that ``yield``."""

        @functools.wraps(func)
        async def labelled(*args: Any, **kwargs: Any) -> AsyncGenerator[Any, Any]:
            tokens = self._set()
            try:
                inner = func(*args, **kwargs)
            finally:
                self._reset(tokens)
            sent: Any = None
            thrown: BaseException | None = None
            while True:
                tokens = self._set()
                try:
                    item = await (inner.asend(sent) if thrown is None else inner.athrow(thrown))
                except StopAsyncIteration:
                    return
                finally:
                    self._reset(tokens)
                thrown = None
                try:
                    sent = yield item
                except GeneratorExit:
                    await inner.aclose()
                    raise
                except BaseException as exc:
                    thrown = exc

        return labelled


class task(Scope):  # lower-case: used like a function, `with llmmeter.task("classify"):`
    """Label every OpenAI call made inside a ``with`` block or a decorated function.

    The label becomes the ``llmmeter.task`` span attribute and a metric label, so cost and
    latency can be broken down by what the application was doing. Labels nest (innermost
    wins) and follow asyncio tasks and threads started with ``contextvars.copy_context``.

    Args:
        name: a short, bounded label such as ``"classify"`` (never a user id or a prompt).
        key: what keeps a conversation on one side of a canary (``sample`` in a policy):
            calls with the same key get the same routing decision in every process. A user,
            session or conversation id fits; it is hashed for the decision and never exported.

    Example::

        with llmmeter.task("classify"):
            client.chat.completions.create(model="gpt-4o", messages=msgs)

        @llmmeter.task("summarize")
        async def summarize(text: str) -> str: ...

        with llmmeter.task("support-chat", key=conversation_id):
            client.chat.completions.create(model="gpt-4o", messages=msgs)
    """

    __slots__ = ("key", "name")

    def __init__(self, name: str, *, key: str | int | None = None) -> None:
        if not isinstance(name, str) or not name:
            raise TypeError(f"llmmeter.task: expected a non-empty str name; got {name!r}")
        if key is not None and (isinstance(key, bool) or not isinstance(key, (str, int))):
            raise TypeError(f"llmmeter.task: expected a str or int key; got {key!r}")
        self.name = name
        self.key = None if key is None else str(key)

    def _set(self) -> _Tokens:
        key = self.key
        return (current_task.set(self.name), None if key is None else current_key.set(key))

    def _reset(self, tokens: _Tokens) -> None:
        task_token, key_token = tokens
        if key_token is not None:
            current_key.reset(key_token)
        current_task.reset(task_token)
