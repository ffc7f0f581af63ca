"""A sandbox acquirer that takes its time: keeps a payment in flight for drain tests."""
from __future__ import annotations

import os
import time

from payments.acquirers.base import AcquirerResult, AuthorizationRequest
from payments.acquirers.sandbox import SandboxAcquirer


class SlowAcquirer(SandboxAcquirer):
    def authorize(self, request: AuthorizationRequest) -> AcquirerResult:
        time.sleep(float(os.environ.get("SLOW_ACQUIRER_SECONDS", "1.0")))
        return super().authorize(request)
