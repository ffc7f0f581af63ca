"""Provisioning commands (operations.md): stdout is one JSON object, nothing else."""
from __future__ import annotations

import json
import re
import uuid
from io import StringIO
from pathlib import Path

import pytest
from django.contrib.auth import authenticate
from django.core.management import CommandError, call_command
from django.db import connection

from merchants.models import Merchant
from payments import outbox
from payments import cards
from payments.errors import CardBanned, NotAuthorized
from payments.models import Ban
from payments.states import BanKind
from terminals.models import Terminal
from terminals.services import terminal_authenticate
from tests.factories import MerchantFactory

pytestmark = pytest.mark.django_db


def run(*args: str) -> str:
    out = StringIO()
    call_command(*args, stdout=out)
    return out.getvalue()


def run_json(*args: str) -> dict:
    text = run(*args)
    data = json.loads(text)  # one JSON object and nothing else (json.loads refuses trailing text)
    assert isinstance(data, dict)
    return data


def all_stored_text() -> str:
    chunks = []
    with connection.cursor() as cursor:
        for table in connection.introspection.table_names():
            cursor.execute(f"SELECT * FROM {connection.ops.quote_name(table)}")
            chunks.extend(str(value) for row in cursor.fetchall() for value in row if value is not None)
    return "\n".join(chunks)


# --- create_merchant -----------------------------------------------------------------------------


def test_create_merchant() -> None:
    data = run_json("create_merchant", "--name", "  Corner Shop ", "--allowed-ip", "10.0.0.5",
                    "--allowed-ip", "::1", "--callback-url", "https://shop.example/cb", "--currency", "usd")
    merchant = Merchant.objects.get(uuid=uuid.UUID(data["uuid"]))
    assert merchant.name == "Corner Shop" and data["name"] == "Corner Shop"
    assert merchant.currency == "USD" and merchant.callback_url == "https://shop.example/cb"
    assert merchant.allowed_ips == ["10.0.0.5", "::1"] and merchant.is_active


def test_create_merchant_defaults() -> None:
    data = run_json("create_merchant", "--name", "Bakery")
    merchant = Merchant.objects.get(uuid=data["uuid"])
    assert merchant.currency == "EUR" and merchant.allowed_ips == [] and merchant.callback_url == ""


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--currency", "XXX"], "unsupported currency"),
        (["--allowed-ip", "not-an-ip"], "'not-an-ip' does not appear to be an IPv4 or IPv6 address"),
        (["--callback-url", "not a url"], "Enter a valid URL"),
    ],
)
def test_create_merchant_refuses_bad_options(args, message) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(CommandError, match=message):
        run("create_merchant", "--name", "Bad", *args)
    assert not Merchant.objects.filter(name="Bad").exists()


def test_create_merchant_refuses_a_duplicate_name() -> None:
    run_json("create_merchant", "--name", "Twice")
    with pytest.raises(CommandError):
        run("create_merchant", "--name", "Twice")
    assert Merchant.objects.filter(name="Twice").count() == 1


# --- create_terminal -----------------------------------------------------------------------------


def test_create_terminal_prints_credentials_that_work() -> None:
    merchant = MerchantFactory(name="Till owner")
    data = run_json("create_terminal", "--merchant", str(merchant.uuid))
    assert set(data) >= {"terminal_id", "secret"}
    terminal = Terminal.objects.get(terminal_id=data["terminal_id"])
    assert terminal.merchant == merchant and terminal.is_active
    identity = terminal_authenticate(terminal_id=data["terminal_id"], secret=data["secret"], peer_ip="192.0.2.7")
    assert identity.pk == terminal.pk and identity.merchant_name == "Till owner"
    with pytest.raises(NotAuthorized):
        terminal_authenticate(terminal_id=data["terminal_id"], secret=data["secret"] + "x", peer_ip="192.0.2.7")
    assert data["secret"] not in all_stored_text()
    assert len(data["secret"]) >= 24


def test_create_terminal_with_allowed_ip() -> None:
    merchant = MerchantFactory()
    data = run_json("create_terminal", "--merchant", str(merchant.uuid), "--allowed-ip", "192.0.2.10")
    assert Terminal.objects.get(terminal_id=data["terminal_id"]).allowed_ips == ["192.0.2.10"]
    terminal_authenticate(terminal_id=data["terminal_id"], secret=data["secret"], peer_ip="192.0.2.10")
    with pytest.raises(NotAuthorized):
        terminal_authenticate(terminal_id=data["terminal_id"], secret=data["secret"], peer_ip="192.0.2.11")


def test_each_terminal_gets_its_own_id_and_secret() -> None:
    merchant = MerchantFactory()
    first = run_json("create_terminal", "--merchant", str(merchant.uuid))
    second = run_json("create_terminal", "--merchant", str(merchant.uuid))
    assert first["terminal_id"] != second["terminal_id"] and first["secret"] != second["secret"]
    with pytest.raises(NotAuthorized):
        terminal_authenticate(terminal_id=first["terminal_id"], secret=second["secret"], peer_ip="192.0.2.1")


@pytest.mark.parametrize("merchant", ["not-a-uuid", str(uuid.uuid4())])
def test_create_terminal_for_an_unknown_merchant(merchant) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(CommandError, match="no merchant with uuid"):
        run("create_terminal", "--merchant", merchant)
    assert not Terminal.objects.exists()


def test_create_terminal_bad_address() -> None:
    merchant = MerchantFactory()
    with pytest.raises(CommandError):
        run("create_terminal", "--merchant", str(merchant.uuid), "--allowed-ip", "999.1.1.1")
    assert not Terminal.objects.exists()


# --- import_bans ---------------------------------------------------------------------------------


@pytest.fixture
def csv_file(tmp_path: Path):  # type: ignore[no-untyped-def]
    def write(text: str, encoding: str = "utf-8") -> str:
        path = tmp_path / "bans.csv"
        path.write_bytes(text.encode(encoding) if isinstance(text, str) else text)
        return str(path)

    return write


def test_import_bans(csv_file, shipped_defaults) -> None:  # type: ignore[no-untyped-def]
    before = Ban.objects.count()
    path = csv_file(
        "kind,value,reason\n"
        "card,4111111111111111,stolen\n"
        "bin,510510,compromised issuer\n"
        "BIN,4000123,\n"
        "check,12345678abc,bounced\n"
        "pin,2468\n"
        "\n"
        "check,00000000AAA,already shipped\n"  # on the list already: skipped
        "card,4111111111111111,twice in the file\n"
    )
    assert run_json("import_bans", path) == {"imported": 5, "skipped": 2}
    assert Ban.objects.count() == before + 5
    card = Ban.objects.get(kind=BanKind.CARD, card_last4="1111")
    assert card.key == cards.card_facts("4111111111111111").fingerprint
    assert card.card_bin == "411111" and card.reason == "stolen"
    assert "4111111111111111" not in all_stored_text()
    assert Ban.objects.get(kind=BanKind.CHECK, key="12345678ABC").reason == "bounced"
    assert Ban.objects.filter(kind=BanKind.BIN, key__in=["510510", "4000123"]).count() == 2
    assert Ban.objects.filter(kind=BanKind.PIN, key=cards.pin_fingerprint("2468")).exists()
    # Importing the same file again imports nothing new.
    assert run_json("import_bans", path) == {"imported": 0, "skipped": 7}


def test_imported_card_ban_refuses_payment(csv_file) -> None:  # type: ignore[no-untyped-def]
    from payments import services
    from payments.states import PaymentMethod
    from tests.factories import TerminalFactory

    run_json("import_bans", csv_file("kind,value,reason\ncard,4242424242424242,test\nbin,5105105,test\n"))
    terminal = TerminalFactory()
    for number, card_type in (("4242424242424242", "VISA"), ("5105105105105100", "MASTER")):
        token = services.token_issue(terminal_pk=terminal.pk, payment_type=PaymentMethod.CONTACTLESS)
        with pytest.raises(CardBanned):
            services.payment_sale_with_token(
                terminal_pk=terminal.pk, token=token.value, method=PaymentMethod.CONTACTLESS, amount="1",
                card_type=card_type, card_number=number,
            )


@pytest.mark.parametrize(
    ("text", "line"),
    [
        ("kind,value,reason\ncard,4111111111111111,ok\nbin,12345,too short\n", 3),
        ("kind,value,reason\ncard,4111111111111111,ok\n\ncheck,12345678ABC\nwho,x,y\n", 5),
        ("kind,value,reason\npin,12345,x\n", 2),
        ("kind,value,reason\ncard,4111-1111-1111-1111,x\n", 2),
        ("kind,value,reason\ncheck,1234,x\n", 2),
        ("kind,value,reason\ncard\n", 2),
        ("kind,number,reason\ncard,4111111111111111,x\n", 1),
        ("card,4111111111111111,x\n", 1),
        ("", 1),
    ],
)
def test_import_bans_bad_row_imports_nothing(csv_file, text, line) -> None:  # type: ignore[no-untyped-def]
    before = Ban.objects.count()
    with pytest.raises(CommandError) as info:
        run("import_bans", csv_file(text))
    assert re.search(rf"\bline {line}\b", str(info.value)), str(info.value)
    assert "nothing imported" in str(info.value)
    assert Ban.objects.count() == before
    assert "4111111111111111" not in str(info.value)


def test_import_bans_reads_a_bom_and_crlf(csv_file) -> None:  # type: ignore[no-untyped-def]
    path = csv_file("\ufeffkind,value,reason\r\nbin,400000,x\r\n")
    assert run_json("import_bans", path) == {"imported": 1, "skipped": 0}


def test_import_bans_unreadable_files(csv_file, tmp_path) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(CommandError, match="cannot read"):
        run("import_bans", str(tmp_path / "missing.csv"))
    with pytest.raises(CommandError, match="not UTF-8"):
        run("import_bans", csv_file("kind,value,reason\ncheck,12345678ABC,caf\xe9\n", encoding="latin-1"))
    assert not Ban.objects.filter(key="12345678ABC").exists()


# --- seed_demo -----------------------------------------------------------------------------------


def test_seed_demo_is_idempotent_and_prints_working_credentials() -> None:
    first = run_json("seed_demo", "--json")
    second = run_json("seed_demo", "--json")
    assert first["merchant"] == second["merchant"]
    assert Merchant.objects.filter(name="Demo Shop").count() == 1
    assert Terminal.objects.filter(merchant__name="Demo Shop").count() == 2
    assert [t["terminal_id"] for t in first["terminals"]] == [t["terminal_id"] for t in second["terminals"]]
    for old, new in zip(first["terminals"], second["terminals"]):
        identity = terminal_authenticate(terminal_id=new["terminal_id"], secret=new["secret"], peer_ip="127.0.0.1")
        assert identity.merchant_name == "Demo Shop"
        # Secrets are rotated at every run: the printed one is the one that works.
        with pytest.raises(NotAuthorized):
            terminal_authenticate(terminal_id=old["terminal_id"], secret=old["secret"], peer_ip="127.0.0.1")
    staff = second["staff"]
    user = authenticate(username=staff["username"], password=staff["password"])
    assert user is not None and user.is_staff and user.is_superuser
    assert authenticate(username="admin", password=first["staff"]["password"]) is None
    stored = all_stored_text()
    assert all(t["secret"] not in stored for t in second["terminals"]) and staff["password"] not in stored
    # The demo merchant can take esipay payments and receives webhooks; the
    # webhook secret, too, is rotated and printed at every run.
    merchant = Merchant.objects.get(name="Demo Shop")
    assert merchant.callback_url == "http://127.0.0.1:8000/demo/esipay-return"
    [endpoint] = merchant.webhook_endpoints.all()
    assert endpoint.url == second["webhook"]["url"] == "http://127.0.0.1:8000/demo/webhooks"
    assert outbox.endpoint_secret(endpoint) == second["webhook"]["secret"] != first["webhook"]["secret"]
    assert second["webhook"]["secret"] not in stored


def test_seed_demo_text_output() -> None:
    text = run("seed_demo")
    terminals = re.findall(r"terminal_id=(\S+) secret=(\S+)", text)
    assert len(terminals) == 2
    for terminal_id, secret in terminals:
        terminal_authenticate(terminal_id=terminal_id, secret=secret, peer_ip="127.0.0.1")
    (password,) = re.findall(r"Back office login: admin / (\S+)", text)
    assert authenticate(username="admin", password=password) is not None
    assert re.search(r"Demo merchant: Demo Shop \([0-9a-f-]{36}\)", text)
