"""Acquirers for the secure API's tests (the edge of the world: a bank)."""
from __future__ import annotations

import threading

from payments.acquirers.base import AcquirerResult, AuthorizationRequest, Outcome
from payments.acquirers.sandbox import SandboxAcquirer


class DecliningVerifications(SandboxAcquirer):
    """Declines every zero-amount authorization (a card that can no longer be verified)."""

    def authorize(self, request: AuthorizationRequest) -> AcquirerResult:
        if request.amount == 0:
            return AcquirerResult(Outcome.DECLINED, decline_code="do_not_honour", reason="do not honour")
        return super().authorize(request)


class HeldAcquirer(SandboxAcquirer):
    """Holds every authorization with an amount until the test releases it, so that a
    request is still running while another arrives."""

    entered = threading.Event()
    release = threading.Event()
    seen: list[AuthorizationRequest] = []

    @classmethod
    def reset(cls) -> None:
        cls.entered = threading.Event()
        cls.release = threading.Event()
        cls.seen = []

    def authorize(self, request: AuthorizationRequest) -> AcquirerResult:
        if request.amount > 0:
            type(self).seen.append(request)
            type(self).entered.set()
            if not type(self).release.wait(timeout=60):
                raise TimeoutError("the test never released the acquirer")
        return super().authorize(request)


class RecordingAcquirer(SandboxAcquirer):
    """The sandbox, remembering what it was asked (to see the CVV that reached it)."""

    seen: list[AuthorizationRequest] = []

    def authorize(self, request: AuthorizationRequest) -> AcquirerResult:
        type(self).seen.append(request)
        return super().authorize(request)
