"""Calls to the acquirer: their own bounded pool, a deadline, and what a failure means.

Every connector call runs on the acquirer pool (``ACQUIRER_THREADS``
threads per process, made lazily, anew in a forked child), never in the
caller's thread: a slow acquirer then holds acquirer threads only, not the
listener's database threads nor its event loop. The caller waits for the
answer until ``ACQUIRER_TIMEOUT_SECONDS``; after that the answer, if it ever
comes, is dropped (logged): the payment is left ``processing`` for the
resolver (``reconciliation``), which asks the acquirer what happened.

What a failure means (``payments.acquirers.base``):

- the deadline passed, or the connector raised ``AcquirerTimeout`` or another
  ``AcquirerError``, or answered ``Outcome.UNKNOWN``: the outcome is unknown;
- ``AcquirerUnavailable``, or a call still queued at its deadline (the pool
  was full: it never started, so nothing was sent): a definite technical
  failure (``Outcome.ERROR``);
- anything else the connector raises is a bug, never an answer: payments
  treat it as an unknown outcome (``acquirer_answer``), the resolver and the
  refund task let it propagate (``acquirer_run``), and a Celery time limit
  always propagates.
"""
from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import os
import threading
from collections.abc import Callable
from typing import Any, TypeVar

from celery.exceptions import SoftTimeLimitExceeded
from django.conf import settings

from ..acquirers.base import AcquirerError, AcquirerResult, AcquirerTimeout, AcquirerUnavailable, Outcome
from ..db import require_no_transaction

logger = logging.getLogger(__name__)

T = TypeVar("T")

_pool: concurrent.futures.ThreadPoolExecutor | None = None
_pool_pid = 0
_pool_lock = threading.Lock()


def _executor() -> concurrent.futures.ThreadPoolExecutor:
    """This process's acquirer pool (threads do not survive a fork: a child makes its own)."""
    global _pool, _pool_pid
    if _pool is None or _pool_pid != os.getpid():
        with _pool_lock:
            if _pool is None or _pool_pid != os.getpid():
                _pool = concurrent.futures.ThreadPoolExecutor(
                    max_workers=settings.ACQUIRER_THREADS, thread_name_prefix="acquirer"
                )
                _pool_pid = os.getpid()
    return _pool


def _name(call: Callable[..., Any]) -> str:
    return getattr(call, "__name__", repr(call))


def _late(name: str) -> Callable[[concurrent.futures.Future[Any]], None]:
    def report(future: concurrent.futures.Future[Any]) -> None:
        if future.cancelled():
            return
        error = future.exception()
        logger.warning(
            "acquirer %s answered after its deadline (%s): dropped, the resolver settles the payment",
            name, type(error).__name__ if error else "an answer",
        )

    return report


def _gave_up(future: concurrent.futures.Future[Any], name: str, timeout: float) -> AcquirerError:
    """The error for a call whose deadline passed: it never started (the pool was
    full: nothing was sent) or it is still running (its answer will be dropped)."""
    if future.cancel():
        return AcquirerUnavailable(f"acquirer pool busy: {name} not sent within {timeout:g} s")
    future.add_done_callback(_late(name))
    return AcquirerTimeout(f"no answer from the acquirer within {timeout:g} s")


def acquirer_run(call: Callable[..., T], /, *args: Any, **kwargs: Any) -> T:
    """Run a connector call on the acquirer pool and wait for it until the deadline.

    Returns what the connector returned; raises ``AcquirerTimeout`` when the
    deadline passed, ``AcquirerUnavailable`` when the call never started,
    the connector's own ``AcquirerError``, or anything else it raised, as is.
    """
    require_no_transaction("acquirer call")
    timeout = settings.ACQUIRER_TIMEOUT_SECONDS
    future = _executor().submit(call, *args, **kwargs)
    try:
        return future.result(timeout=timeout)
    except concurrent.futures.TimeoutError:  # the builtin TimeoutError: the connector may raise it too
        if future.done() and not future.cancelled():
            return future.result()  # the connector's own answer or exception, not our deadline
        raise _gave_up(future, _name(call), timeout) from None


async def acquirer_run_async(call: Callable[..., T], /, *args: Any, **kwargs: Any) -> T:
    """``acquirer_run`` for an event loop: it waits without holding any thread."""
    timeout = settings.ACQUIRER_TIMEOUT_SECONDS
    future = _executor().submit(call, *args, **kwargs)
    try:
        async with asyncio.timeout(timeout):
            return await asyncio.wrap_future(future)
    except TimeoutError:
        if future.done() and not future.cancelled():
            return future.result()  # the connector's own answer or exception, not our deadline
        raise _gave_up(future, _name(call), timeout) from None


def _answer_for(error: BaseException, name: str) -> AcquirerResult:
    """A connector's failure, in the core's terms (see the module docstring)."""
    if isinstance(error, AcquirerUnavailable):
        logger.warning("acquirer %s not sent: %s", name, error)
        return AcquirerResult(Outcome.ERROR, decline_code="acquirer_unavailable", reason="acquirer unavailable")
    if isinstance(error, AcquirerTimeout):
        logger.warning("acquirer %s: %s; the outcome is unknown", name, error)
        return AcquirerResult(Outcome.UNKNOWN, decline_code="acquirer_timeout", reason="no answer from the acquirer in time")
    if isinstance(error, AcquirerError):
        logger.warning("acquirer %s failed: %s; the outcome is unknown", name, error)
        return AcquirerResult(Outcome.UNKNOWN, decline_code="acquirer_error", reason="the acquirer could not answer")
    # A bug (in a connector, or a result of the wrong type): never an answer.
    logger.error("acquirer %s raised %s: the outcome is unknown", name, type(error).__name__, exc_info=error)
    return AcquirerResult(Outcome.UNKNOWN, decline_code="internal_error", reason="internal error")


def _checked(result: object, name: str) -> AcquirerResult:
    if not isinstance(result, AcquirerResult):
        raise TypeError(f"acquirer {name} returned {type(result).__name__}, not an AcquirerResult")
    return result


def acquirer_answer(call: Callable[..., AcquirerResult], /, *args: Any, **kwargs: Any) -> AcquirerResult:
    """A payment's connector call, whose failures are answers: ERROR when nothing
    was sent, UNKNOWN when something may have been (a bug included). Only a
    Celery time limit and a broken rule of the house (a call inside a
    transaction) propagate."""
    require_no_transaction("acquirer call")
    try:
        return _checked(acquirer_run(call, *args, **kwargs), _name(call))
    except SoftTimeLimitExceeded:
        raise
    except Exception as error:  # noqa: BLE001 - each kind is sorted by _answer_for; none is taken for an answer
        return _answer_for(error, _name(call))


async def acquirer_answer_async(call: Callable[..., AcquirerResult], /, *args: Any, **kwargs: Any) -> AcquirerResult:
    """``acquirer_answer`` for an event loop."""
    try:
        return _checked(await acquirer_run_async(call, *args, **kwargs), _name(call))
    except Exception as error:  # noqa: BLE001 - as acquirer_answer
        return _answer_for(error, _name(call))
