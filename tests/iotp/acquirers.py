"""A sandbox acquirer that counts its authorizations (what "charges nothing" means)."""
from __future__ import annotations

import threading
import time

from payments.acquirers.base import AcquirerResult, AuthorizationRequest
from payments.acquirers.sandbox import SandboxAcquirer

calls: list[int] = []
_lock = threading.Lock()


class CountingAcquirer(SandboxAcquirer):
    def authorize(self, request: AuthorizationRequest) -> AcquirerResult:
        with _lock:
            calls.append(request.transaction_id)
        time.sleep(0.2)  # long enough for concurrent requests to meet in flight
        return super().authorize(request)
