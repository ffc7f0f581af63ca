"""The secure API: a card-on-file REST API, every request signed (PLTOKEN), every
payload encrypted (shared/contracts/secure-api.md, docs/secure-api.md).

A Django app of its own (label ``secure_api``) for the door's own tables:
idempotency records and the API call log. Modules:

- ``envelope``: the AES-GCM envelope (IV || ciphertext || tag, hex);
- ``codes``: the contract's error table (9xx) and the core's errors mapped onto it;
- ``auth``: PLTOKEN as a DRF authentication (``payments.doors.pltoken``);
- ``idempotency``: orderID and Idempotency-Key records shared by every process;
- ``calls``: the API call log staff see in the back office;
- ``base``: the view every resource inherits (authenticate, decrypt, answer encrypted);
- ``serializers``, ``views``, ``urls``: the resources; ``schema``: the OpenAPI description;
- ``admin``: app_id, keys shown once, API calls, in the back office.
"""
