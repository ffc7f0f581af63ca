"""The IOTP Payment API door (RFC 3867 in XML over ``POST /iotp``; docs/iotp.md).

``views`` authenticates (PLTOKEN), caps and parses the request (``xmlio``:
defusedxml, no DTD), dispatches the call element to its group's module
(``brands``, ``auth``, ``paying``, ``inquiries``, ``receipts``,
``software``) and renders ``ErrorResponse`` for every refusal (``errors``).
The rules live in ``payments.services`` (``iotp``, ``lifecycle``).
"""
