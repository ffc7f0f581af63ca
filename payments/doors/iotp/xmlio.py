"""Reading requests (defusedxml, no DTD, no entities) and writing answers
(ElementTree, never strings glued together)."""
from __future__ import annotations

import base64
import binascii
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from dataclasses import dataclass

from defusedxml import DefusedXmlException
from defusedxml.ElementTree import fromstring

from .errors import TRANSIENT, IotpError

NS = "http://www.iotp.org/2000/08/PaymentAPI"
XML_LANG = "{http://www.w3.org/XML/1998/namespace}lang"
ROOT = "IotpPaymentApiRequest"
RESPONSE_ROOT = "IotpPaymentApiResponse"
# A packaged content's text is at most this long (card data, receipts, challenges).
MAX_CONTENT_CHARS = 64 * 1024


def _local(tag: object) -> tuple[str, str]:
    """(namespace, local name) of an ElementTree tag ('' namespace when none)."""
    if not isinstance(tag, str):  # comments and processing instructions
        return "", ""
    if tag.startswith("{"):
        namespace, _, name = tag[1:].partition("}")
        return namespace, name
    return "", tag


@dataclass
class Call:
    """The one call element of a request."""

    name: str
    element: ET.Element
    namespace: str

    def attr(self, name: str) -> str | None:
        return self.element.get(name)

    def children(self, *names: str) -> Iterator[ET.Element]:
        for child in self.element:
            namespace, local = _local(child.tag)
            if namespace == self.namespace and local in names:
                yield child


def parse(body: bytes) -> Call:
    """The request's call element, or XmlNotWellFrmd / XmlNotValid."""
    try:
        root = fromstring(body, forbid_dtd=True, forbid_entities=True, forbid_external=True)
    except DefusedXmlException as exc:  # a DTD, entities, external references: refused, never expanded
        raise IotpError("XmlNotValid", f"Document type declarations are refused ({type(exc).__name__})",
                        element=ROOT) from None
    except ET.ParseError as exc:
        raise IotpError("XmlNotWellFrmd", f"The body is not well-formed XML: {exc}", element=ROOT) from None
    except (ValueError, LookupError, RecursionError, UnicodeError) as exc:  # expat's limits, unknown encodings
        raise IotpError("XmlNotWellFrmd", f"The body is not well-formed XML ({type(exc).__name__})",
                        element=ROOT) from None
    namespace, name = _local(root.tag)
    if name != ROOT or namespace not in ("", NS):
        shown = f"{{{namespace}}}{name}" if namespace else name
        raise IotpError("XmlNotValid", f"The root element must be {ROOT} (namespace {NS}), not {shown}",
                        element=ROOT)
    calls = [child for child in root if isinstance(child.tag, str)]
    if len(calls) != 1:
        raise IotpError("XmlNotValid", f"{ROOT} must hold exactly one call element, not {len(calls)}",
                        element=ROOT)
    call_namespace, call_name = _local(calls[0].tag)
    if call_namespace != namespace:
        raise IotpError("XmlNotValid", f"The call element must be in the namespace of {ROOT}", element=call_name)
    return Call(name=call_name, element=calls[0], namespace=namespace)


# --- Packaged content ----------------------------------------------------------------------


@dataclass(frozen=True)
class Packaged:
    """A PackagedContent element (IOTP §3.7): Name, Content, Transform and its text."""

    element: str
    name: str
    transform: str
    text: str

    def data(self) -> bytes:
        """The content's bytes (base64-decoded when Transform is BASE64)."""
        if self.transform == "BASE64":
            try:
                return base64.b64decode("".join(self.text.split()), validate=True)
            except (binascii.Error, ValueError):
                raise IotpError("EncapProtErr", f"{self.name or self.element}: not base64",
                                element=self.element) from None
        return self.text.encode()


def packaged(call: Call, *element_names: str) -> list[Packaged]:
    found = []
    for child in call.children(*element_names):
        local = _local(child.tag)[1]
        transform = child.get("Transform", "NONE")
        if transform not in ("NONE", "BASE64"):
            raise IotpError("AttValIllegal", "Transform must be NONE or BASE64", element=local, attribute="Transform")
        text = child.text or ""
        if len(text) > MAX_CONTENT_CHARS:
            raise IotpError("ElTooLarge", f"{local} holds more than {MAX_CONTENT_CHARS} characters", element=local)
        found.append(Packaged(element=local, name=child.get("Name", ""), transform=transform, text=text))
    return found


def packaged_element(parent: ET.Element, tag: str, *, name: str, text: str, transform: str = "NONE",
                     content: str = "") -> ET.Element:
    element = ET.SubElement(parent, tag, {"Name": name})
    if content:
        element.set("Content", content)
    element.set("Transform", transform)
    element.text = text
    return element


# --- Answers ----------------------------------------------------------------------------
# Answers are built with unqualified tags under a root that declares the API's
# namespace as the default one (xmlns), so every element is in it; attributes,
# as XML wants, are in no namespace (ElementTree's default_namespace option
# would refuse them).


def element(tag: str, attributes: dict[str, str] | None = None) -> ET.Element:
    return ET.Element(tag, {k: v for k, v in (attributes or {}).items() if v != ""})


def child(parent: ET.Element, tag: str, attributes: dict[str, str] | None = None) -> ET.Element:
    return ET.SubElement(parent, tag, {k: v for k, v in (attributes or {}).items() if v != ""})


def document(*parts: ET.Element) -> bytes:
    """One IotpPaymentApiResponse around ``parts``, indented, UTF-8."""
    root = ET.Element(RESPONSE_ROOT, {"xmlns": NS})
    root.extend(parts)
    ET.indent(root)
    return ET.tostring(root, encoding="utf-8", xml_declaration=True) + b"\n"


def error_element(error: IotpError) -> ET.Element:
    attributes = {"ErrorCode": error.code, "ErrorDesc": error.desc[:512], "Severity": error.severity}
    if error.severity == TRANSIENT and error.min_retry_secs is not None:
        attributes["MinRetrySecs"] = str(error.min_retry_secs)
    node = element("ErrorResponse", attributes)
    location: dict[str, str] = {}
    if error.element:
        location["ElementRef"] = error.element
    if error.attribute:
        location["AttName"] = error.attribute
    child(node, "ErrorLocation", location)  # ErrorLocation+ (RFC 3867 §3)
    return node
