"""Talking to POST /iotp as an IOTP application core does: PLTOKEN-signed XML
documents kept as fixtures (tests/iotp/fixtures), answers read back as XML."""
from __future__ import annotations

import base64
import json
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from string import Template

from django.test import Client

from payments.doors import pltoken

FIXTURES = Path(__file__).resolve().parent / "fixtures"
NS = "http://www.iotp.org/2000/08/PaymentAPI"
URI = "http://testserver/iotp"


def q(tag: str) -> str:
    return f"{{{NS}}}{tag}"


def fixture(path: str) -> str:
    return (FIXTURES / path).read_text()


def render(path: str, **values: str) -> bytes:
    """A fixture with its ${placeholders} filled (every one must be given)."""
    return Template(fixture(path)).substitute(values).encode()


def card_data(pan: str = "4242424242424242", expiry: str | None = None, cvv: str | None = "123") -> str:
    data = {"pan": pan, "expiry": expiry or f"{datetime.now(UTC).year + 3}12"}
    if cvv is not None:
        data["cvv"] = cvv
    return base64.b64encode(json.dumps(data).encode()).decode()


def window(*, before: int = 60, after: int = 3600) -> dict[str, str]:
    now = datetime.now(UTC).replace(microsecond=0)
    return {
        "ok_from": (now - timedelta(seconds=before)).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "ok_to": (now + timedelta(seconds=after)).strftime("%Y-%m-%dT%H:%M:%SZ"),
    }


@dataclass
class Answer:
    status: int
    body: bytes
    content_type: str

    @property
    def root(self) -> ET.Element:
        return ET.fromstring(self.body)

    @property
    def text(self) -> str:
        return self.body.decode()

    @property
    def error(self) -> ET.Element | None:
        return self.root.find(q("ErrorResponse"))

    @property
    def error_code(self) -> str | None:
        error = self.error
        return None if error is None else error.get("ErrorCode")

    @property
    def location(self) -> dict[str, str]:
        error = self.error
        assert error is not None, self.text
        found = error.find(q("ErrorLocation"))
        assert found is not None, self.text
        return dict(found.attrib)

    def response(self, name: str) -> ET.Element:
        found = self.root.find(q(name))
        assert found is not None, f"no {name} in:\n{self.text}"
        return found


class IotpClient:
    """A merchant's IOTP application core: signs each body with its app_key."""

    def __init__(self, keys) -> None:  # type: ignore[no-untyped-def]
        self.keys = keys
        self.client = Client()

    def post(self, body: bytes, *, content_type: str = "application/xml", authorization: str | None = None,
             **extra: str) -> Answer:
        if authorization is None:
            authorization = pltoken.authorization_header(
                app_id=self.keys.app_id, app_key=self.keys.app_key, method="POST", uri=URI, body=body,
            )
        response = self.client.post("/iotp", data=body, content_type=content_type,
                                    HTTP_AUTHORIZATION=authorization, **extra)
        return Answer(response.status_code, response.content, response.get("Content-Type", ""))

    def call(self, path: str, **values: str) -> Answer:
        answer = self.post(render(path, **values))
        assert answer.status == 200, answer.text
        return answer


def normalized(text: str, dynamic: dict[str, str]) -> str:
    """An answer with its run-dependent values put back as ${placeholders}.

    A key may be ``Attr="value"`` to replace a short value only in that
    attribute (a transaction id "7" must not replace every 7)."""
    for value, name in sorted(dynamic.items(), key=lambda item: -len(item[0])):
        if not value:
            continue
        if value.endswith('"') and '="' in value:
            attribute = value.split('="', 1)[0]
            text = text.replace(value, f'{attribute}="${{{name}}}"')
        else:
            text = text.replace(value, "${" + name + "}")
    return text


def receipt_fields(receipt: str) -> dict[str, str]:
    return json.loads(base64.b64decode(receipt))["receipt"]
