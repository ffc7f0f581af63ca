"""What every call handler gets: the authenticated merchant and the request."""
from __future__ import annotations

from dataclasses import dataclass

from django.http import HttpRequest

from merchants.models import Merchant


@dataclass(frozen=True)
class Context:
    merchant: Merchant
    request: HttpRequest

    def url(self, path: str) -> str:
        """An absolute URL of the gateway, as the caller reached it."""
        return self.request.build_absolute_uri(path)
