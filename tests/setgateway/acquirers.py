"""A sandbox acquirer that takes its time for amounts ending in .99 (answers come back out of order)."""
from __future__ import annotations

import os
import time
from decimal import Decimal

from payments.acquirers.base import AcquirerResult, AuthorizationRequest
from payments.acquirers.sandbox import SandboxAcquirer


class SlowForSomeAmounts(SandboxAcquirer):
    def authorize(self, request: AuthorizationRequest) -> AcquirerResult:
        if request.amount % 1 == Decimal("0.99"):
            time.sleep(float(os.environ.get("SLOW_ACQUIRER_SECONDS", "1.0")))
        return super().authorize(request)
