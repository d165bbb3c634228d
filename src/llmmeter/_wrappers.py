"""The two thin wrappers every patched SDK method goes through (sync and async).

Each opens a :class:`~llmmeter._call.Call` under the guard, runs the user's call outside any
guard, hands the exception to the call or the result to :func:`~llmmeter._proxies.deliver`,
and returns what that gives: the result itself, or a proxy that finishes the call later.
The user's exception is re-raised with a bare ``raise``: the same object, unchanged. The two
differ by one ``await``.

The loop re-sends in two cases only, each decided by the call: our own ``stream_options``
was rejected, or a routed call failed (or its answer was not accepted) and goes again with
the user's own model. Then ``call`` becomes the re-send; the user gets its outcome.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, Final

from opentelemetry import context as otel_context

from ._call import current_call, open_call
from ._guard import Untraced
from ._proxies import close_with_helper, deliver
from ._runtime import Runtime
from ._targets import Target

Wrapped = Callable[..., Any]
RuntimeSource = Callable[[], Runtime | None]

# The keys OpenTelemetry instrumentations honour to record nothing (the SDK's own exporters,
# Logfire and others set them around work that must not be traced): the key object of
# ``opentelemetry.context``, and the plain string some instrumentations use. The wrappers
# read them from the context they pass on to the call, which is read once per call.
_SUPPRESSED: Final = (otel_context._SUPPRESS_INSTRUMENTATION_KEY, "suppress_instrumentation")


def sync_wrapper(target: Target, runtime_of: RuntimeSource) -> Callable[..., Any]:
    def wrapper(
        wrapped: Wrapped, instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> Any:
        runtime = runtime_of()
        # Inert after uninstrument(); one span per logical request when SDK methods nest;
        # nothing where the application suppressed instrumentation.
        if runtime is None or current_call.get() is not None:
            return wrapped(*args, **kwargs)
        current = otel_context.get_current()
        if current.get(_SUPPRESSED[0]) or current.get(_SUPPRESSED[1]):
            return wrapped(*args, **kwargs)
        if runtime.restack is not None:
            runtime.restack(wrapper)  # another instrumentation wrapped over ours since?
        call = open_call(runtime, target, instance, args, kwargs, context=current)
        if call is None:
            return wrapped(*args, **kwargs)
        if call.routing is not None:
            call.invoke = functools.partial(wrapped, *args)
        while True:
            try:
                result = wrapped(*args, **call.kwargs)
            except BaseException as exc:
                if call.retry_without_injection(exc):
                    continue
                call.leave()
                again = call.fall_back(exc)
                if again is None:
                    call.on_error(exc)
                    raise
            else:
                call.leave()
                again = call.escalate(result)
                if again is None:
                    return deliver(call, result)
            if isinstance(again, Untraced):  # our re-send failed to set up: send it bare
                return wrapped(*args, **call.original_kwargs)
            call = again

    return wrapper


def async_wrapper(target: Target, runtime_of: RuntimeSource) -> Callable[..., Any]:
    async def wrapper(
        wrapped: Wrapped, instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> Any:
        runtime = runtime_of()
        if runtime is None or current_call.get() is not None:
            return await wrapped(*args, **kwargs)
        current = otel_context.get_current()
        if current.get(_SUPPRESSED[0]) or current.get(_SUPPRESSED[1]):
            return await wrapped(*args, **kwargs)
        if runtime.restack is not None:
            runtime.restack(wrapper)
        call = open_call(runtime, target, instance, args, kwargs, context=current)
        if call is None:
            return await wrapped(*args, **kwargs)
        if call.routing is not None:
            call.invoke = functools.partial(wrapped, *args)
        while True:
            try:
                result = await wrapped(*args, **call.kwargs)
            except BaseException as exc:
                if call.retry_without_injection(exc):
                    continue
                call.leave()
                again = call.fall_back(exc)
                if again is None:
                    call.on_error(exc)
                    raise
            else:
                call.leave()
                again = call.escalate(result)
                if again is None:
                    return deliver(call, result)
            if isinstance(again, Untraced):  # our re-send failed to set up: send it bare
                return await wrapped(*args, **call.original_kwargs)
            call = again

    return wrapper


def attempt_wrapper(runtime_of: RuntimeSource) -> Callable[..., Any]:
    """Counts HTTP attempts (the SDK's internal retries) for the call running in this context."""

    def wrapper(
        wrapped: Wrapped, instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> Any:
        call = current_call.get()
        if call is not None:
            call.on_attempt()
        else:
            # Every SDK request passes here, patched method or not: where patching a module
            # was interrupted, it is finished now (for the calls after this one).
            runtime = runtime_of()
            if runtime is not None and runtime.repair is not None:
                runtime.repair()
        return wrapped(*args, **kwargs)

    return wrapper


def helper_close_wrapper(runtime_of: RuntimeSource) -> Callable[..., Any]:
    """A ``.stream()`` helper's ``close``: the stream it reads closes with it (see
    :data:`~llmmeter._targets.STREAM_HELPER_CLOSES`)."""

    def wrapper(
        wrapped: Wrapped, instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> Any:
        try:
            return wrapped(*args, **kwargs)
        finally:
            proxy = close_with_helper(instance)
            if proxy is not None:
                proxy.close()

    return wrapper


def async_helper_close_wrapper(runtime_of: RuntimeSource) -> Callable[..., Any]:
    """The async ``.stream()`` helpers' ``close``."""

    async def wrapper(
        wrapped: Wrapped, instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> Any:
        try:
            return await wrapped(*args, **kwargs)
        finally:
            proxy = close_with_helper(instance)
            if proxy is not None:
                await proxy.close()

    return wrapper
