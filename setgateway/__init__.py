"""The SET merchant/acquirer TCP gateway (docs/set-gateway.md).

Plain-Python protocol modules (``framing``, ``payload``, ``session``,
``client``) know nothing of Django; ``models``, ``services``, ``admin`` and
the ``runsetgateway`` command are the door's Django side.
"""
