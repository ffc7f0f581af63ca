"""PLTOKEN signatures: credentials, the request string, and every refusal (998)."""
from __future__ import annotations

import base64
import subprocess
import sys
import time
from datetime import timedelta

import pytest
from django.db import connection
from django.test import RequestFactory
from django.utils import timezone

from merchants.credentials import api_key_pairs_valid, api_keys_issue, api_nonce_remember, api_nonces_prune
from merchants.models import ApiKeyPair, ApiNonce

from payments.doors import pltoken
from tests.factories import MerchantFactory
from tests.support.threads import run_at_once

pytestmark = pytest.mark.django_db

URI = "https://gateway.example.com/billing/89396b99-5a57-4eca-96c9-60ed109f8c8a/transaction"
BODY = b"data=3230313530393233313033333034663036386562316461373432ab97dc06"


@pytest.fixture
def merchant():  # type: ignore[no-untyped-def]
    return MerchantFactory()


@pytest.fixture
def keys(merchant):  # type: ignore[no-untyped-def]
    return api_keys_issue(merchant=merchant)


def signed(keys, *, method="POST", uri=URI, body=BODY, **kw) -> str:  # type: ignore[no-untyped-def]
    return pltoken.authorization_header(
        app_id=keys.app_id, app_key=keys.app_key, method=method, uri=uri, body=body, **kw
    )


def verify(header: str, *, method="POST", uri=URI, body=BODY, now=None):  # type: ignore[no-untyped-def]
    return pltoken.verify(authorization=header, method=method, uri=uri, body=body, now=now)


# --- credentials -------------------------------------------------------------------------


def test_issued_credentials_have_the_contracts_shape_and_are_sealed(merchant, keys) -> None:  # type: ignore[no-untyped-def]
    assert len(keys.app_id) == 32 and int(keys.app_id, 16) >= 0 and keys.app_id == keys.app_id.lower()
    assert len(base64.b64decode(keys.app_key)) == 32 and len(base64.b64decode(keys.data_key)) == 32
    merchant.refresh_from_db()
    assert merchant.app_id == keys.app_id
    row = ApiKeyPair.objects.get(merchant=merchant)
    assert keys.app_key not in row.app_key_sealed and keys.data_key not in row.data_key_sealed
    assert row.app_key_sealed.startswith("v1:") and row.expires_at is None
    assert keys.app_key not in repr(keys) and keys.data_key not in repr(keys)


def test_rotation_keeps_the_app_id_and_the_old_pair_for_the_grace(merchant, keys, settings) -> None:  # type: ignore[no-untyped-def]
    settings.API_KEY_GRACE_SECONDS = 3600
    rotated = api_keys_issue(merchant=merchant)
    assert rotated.app_id == keys.app_id and rotated.app_key != keys.app_key
    assert verify(signed(keys)).pair.current is False  # the old pair still signs
    assert verify(signed(rotated)).pair.current is True
    later = timezone.now() + timedelta(seconds=3601)
    assert [p.current for p in api_key_pairs_valid(merchant=merchant, now=later)] == [True]
    ApiKeyPair.objects.filter(merchant=merchant, expires_at__isnull=False).update(
        expires_at=timezone.now() - timedelta(seconds=1)
    )
    with pytest.raises(pltoken.PltokenRefused, match="signature"):
        verify(signed(keys))


def test_a_pair_sealed_under_another_master_key_is_not_used(merchant, keys, settings) -> None:  # type: ignore[no-untyped-def]
    settings.PAYMENTS_MASTER_KEY = "another-master-key-0123456789-0123456789"
    assert api_key_pairs_valid(merchant=merchant) == []
    with pytest.raises(pltoken.PltokenRefused, match="no valid API keys"):
        verify(signed(keys))


# --- the request string --------------------------------------------------------------------


def test_enc_is_the_contracts_percent_encoding() -> None:
    assert pltoken.encode_uri("https://127.0.0.1/a") == "https%3a%2f%2f127.0.0.1%2fa"
    assert pltoken.encode_uri("AZaz09-_.~ /?=&é") == "AZaz09-_.~%20%2f%3f%3d%26%c3%a9"


def test_request_string_follows_the_contract() -> None:
    text = pltoken.request_string(
        app_id="44f0878d9bc947e6a4be54aec17632a5", method="get", uri="https://127.0.0.1/Account/X",
        timestamp="1441009867", nonce="27071fad", body=b"",
    )
    assert text == "44f0878d9bc947e6a4be54aec17632a5GEThttps%3a%2f%2f127.0.0.1%2faccount%2fx144100986727071fad"
    with_body = pltoken.request_string(app_id="a" * 32, method="POST", uri="https://h/", timestamp="1",
                                       nonce="n", body=b"data=00")
    assert with_body.endswith("1n" + base64.b64encode(__import__("hashlib").md5(b"data=00").digest()).decode())


def test_absolute_uri_is_as_sent(settings) -> None:  # type: ignore[no-untyped-def]
    settings.ALLOWED_HOSTS = ["gateway.example.com", "127.0.0.1", "[::1]", "h"]
    factory = RequestFactory()
    request = factory.get("/billing/ABC/transactions?data=00ff", HTTP_HOST="gateway.example.com:443", secure=True)
    assert pltoken.absolute_uri(request) == "https://gateway.example.com/billing/ABC/transactions?data=00ff"
    request = factory.get("/account/1", HTTP_HOST="127.0.0.1:8000")
    assert pltoken.absolute_uri(request) == "http://127.0.0.1:8000/account/1"
    request = factory.get("/x", HTTP_HOST="[::1]:80")
    assert pltoken.absolute_uri(request) == "http://[::1]/x"
    request = factory.get("/x%2Fy", HTTP_HOST="h", REQUEST_URI="/x%2Fy?a=1")
    assert pltoken.absolute_uri(request) == "http://h/x%2Fy?a=1"


def test_verify_request_reads_a_django_request(keys) -> None:  # type: ignore[no-untyped-def]
    uri = "http://testserver/account"
    header = signed(keys, uri=uri, body=b'data=abc')
    request = RequestFactory().post("/account", data=b"data=abc", content_type="application/x-www-form-urlencoded",
                                    HTTP_AUTHORIZATION=header)
    assert pltoken.verify_request(request).app_id == keys.app_id


# --- refusals ----------------------------------------------------------------------------


def test_a_good_signature_passes_once(merchant, keys) -> None:  # type: ignore[no-untyped-def]
    header = signed(keys)
    caller = verify(header)
    assert caller.merchant == merchant and caller.app_id == keys.app_id
    assert caller.data_key == base64.b64decode(keys.data_key)
    with pytest.raises(pltoken.PltokenRefused, match="nonce already used") as refused:
        verify(header)
    assert refused.value.code == 998 and refused.value.merchant == merchant


@pytest.mark.parametrize("tamper", [
    lambda h: h.replace("PLTOKEN", "Bearer"),
    lambda h: h.replace("PLTOKEN ", "PLTOKEN"),
    lambda h: "",
    lambda h: h.rsplit(":", 1)[0],
    lambda h: h.rsplit(":", 1)[0] + ":12ab",
    lambda h: h.replace(h.split(":")[2], "x" * 65),
    lambda h: h.replace(h.split(":")[2], "a b"),
])
def test_malformed_headers_are_refused(keys, tamper) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(pltoken.PltokenRefused) as refused:
        verify(tamper(signed(keys)))
    assert refused.value.merchant is None


def test_unknown_or_inactive_app_id(merchant, keys) -> None:  # type: ignore[no-untyped-def]
    other = "0" * 32
    with pytest.raises(pltoken.PltokenRefused, match="unknown app_id"):
        verify(signed(keys).replace(keys.app_id, other))
    merchant.is_active = False
    merchant.save()
    with pytest.raises(pltoken.PltokenRefused, match="unknown app_id"):
        verify(signed(keys))


def test_timestamp_window_is_300_seconds_either_way(keys) -> None:  # type: ignore[no-untyped-def]
    now = time.time()
    assert verify(signed(keys, timestamp=int(now) - 300), now=int(now))
    assert verify(signed(keys, timestamp=int(now) + 300), now=int(now))
    for off in (-301, 301):
        with pytest.raises(pltoken.PltokenRefused, match="timestamp"):
            verify(signed(keys, timestamp=int(now) + off), now=int(now))


@pytest.mark.parametrize("change", ["body", "uri", "method", "query", "key"])
def test_any_change_breaks_the_signature(keys, change) -> None:  # type: ignore[no-untyped-def]
    header = signed(keys, uri=URI + "?data=00")
    kwargs = {"method": "POST", "uri": URI + "?data=00", "body": BODY}
    if change == "body":
        kwargs["body"] = BODY[:-1] + b"7"
    elif change == "uri":
        kwargs["uri"] = kwargs["uri"].replace("transaction", "transactions")
    elif change == "method":
        kwargs["method"] = "PUT"
    elif change == "query":
        kwargs["uri"] = URI + "?data=01"
    else:
        header = pltoken.authorization_header(
            app_id=keys.app_id, app_key=base64.b64encode(b"k" * 32).decode(), method="POST",
            uri=URI + "?data=00", body=BODY,
        )
    with pytest.raises(pltoken.PltokenRefused, match="signature"):
        verify(header, **kwargs)


def test_a_bad_signature_does_not_use_up_the_nonce(keys) -> None:  # type: ignore[no-untyped-def]
    header = signed(keys, nonce="nonce:with:colons")
    with pytest.raises(pltoken.PltokenRefused, match="signature"):
        verify(header, body=b"forged")
    assert verify(header).app_id == keys.app_id  # the genuine request still passes


def test_the_case_of_the_uri_does_not_matter(keys) -> None:  # type: ignore[no-untyped-def]
    assert verify(signed(keys, uri=URI.upper().replace("HTTPS", "https")), uri=URI)


# --- nonces, across connections and processes ------------------------------------------------


def test_expired_nonces_are_forgotten_and_pruned(keys) -> None:  # type: ignore[no-untyped-def]
    past = timezone.now() - timedelta(seconds=1)
    assert api_nonce_remember(app_id=keys.app_id, nonce="n1", expires_at=past)
    assert api_nonce_remember(app_id=keys.app_id, nonce="n1", expires_at=timezone.now() + timedelta(seconds=60))
    assert not api_nonce_remember(app_id=keys.app_id, nonce="n1", expires_at=timezone.now() + timedelta(seconds=60))
    api_nonce_remember(app_id=keys.app_id, nonce="n2", expires_at=past)
    assert api_nonces_prune() == 1
    assert list(ApiNonce.objects.values_list("nonce", flat=True)) == ["n1"]


@pytest.mark.django_db(transaction=True)
def test_a_nonce_replayed_at_once_from_many_connections_passes_once(require_postgres) -> None:  # type: ignore[no-untyped-def]
    keys = api_keys_issue(merchant=MerchantFactory())
    header = signed(keys)
    results = run_at_once([lambda: verify(header) for _ in range(8)])
    passed = [r for r in results if isinstance(r, pltoken.ApiCaller)]
    refused = [r for r in results if isinstance(r, pltoken.PltokenRefused)]
    assert len(passed) == 1 and len(refused) == 7, results


@pytest.mark.django_db(transaction=True)
def test_a_nonce_seen_by_another_process_is_refused(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from tests.support.workers import ROOT, database_url_for_workers

    keys = api_keys_issue(merchant=MerchantFactory())
    header = signed(keys)
    script = (
        "import django, sys; django.setup()\n"
        "from payments.doors import pltoken\n"
        f"pltoken.verify(authorization={header!r}, method='POST', uri={URI!r}, body={BODY!r})\n"
        "print('verified')\n"
    )
    env = {"DJANGO_SETTINGS_MODULE": "config.settings.test", "DATABASE_URL": database_url_for_workers(),
           "PATH": "/usr/bin:/bin", "GATEWAY_VAR_DIR": str(tmp_path)}
    connection.close()
    done = subprocess.run([sys.executable, "-c", script], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=60)
    assert "verified" in done.stdout, done.stderr
    with pytest.raises(pltoken.PltokenRefused, match="nonce already used"):
        verify(header)
