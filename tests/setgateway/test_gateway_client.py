"""A merchant server through the project's client, over real sockets: authorize,
capture partially, refund several times (idempotent by credId), reverse,
inquire; many requests in flight matched by msg-tag; the same bans, limits
and events as every door; reconnects that resend with the same ids."""
from __future__ import annotations

import asyncio
from decimal import Decimal

import pytest

from payments.models import Event, Refund, Transaction
from payments.states import Door, EventType, TransactionStatus
from setgateway import payload
from setgateway.client import BlockingSetClient, GatewayRefused, SetClient
from setgateway.payload import AuthReq, AuthRes, CapRes, CredRes, ErrorMsg, InqReq, InqRes, RevRes

from .conftest import EXPIRY, HAPPY_MASTER, HAPPY_VISA, RunningGateway, SetMerchant, eur

pytestmark = pytest.mark.django_db(transaction=True)

SLOW = "tests.setgateway.acquirers.SlowForSomeAmounts"


def client_for(gateway: RunningGateway, merchant: SetMerchant, **options) -> SetClient:  # type: ignore[no-untyped-def]
    return SetClient("127.0.0.1", gateway.port, transport_id=merchant.transport_id, secret=merchant.secret,
                     timeout=20, **options)


def test_a_payments_life_through_the_client(gateway, shop) -> None:  # type: ignore[no-untyped-def]
    async def life() -> list[payload.Response]:
        async with client_for(gateway, shop) as gw:
            return [
                await gw.authorize("order-1", pan=HAPPY_VISA, expiry=EXPIRY, amount=Decimal("100.00")),
                await gw.capture("order-1", amount=Decimal("60.00")),
                await gw.refund("order-1", "r1", amount=Decimal("10.00")),
                await gw.refund("order-1", "r2", amount=Decimal("20.00")),
                await gw.refund("order-1", "r1", amount=Decimal("10.00")),  # a repeat
                await gw.inquire("order-1"),
                await gw.authorize("order-2", pan=HAPPY_MASTER, expiry=EXPIRY, amount=Decimal("5.00")),
                await gw.reverse("order-2"),
                await gw.inquire("order-2"),
                await gw.echo(b"ping"),
            ]

    auth, capture, r1, r2, r1_again, inquiry, auth2, reversal, inquiry2, echo = asyncio.run(life())
    txn = Transaction.objects.get(merchant_reference="order-1")
    assert auth == AuthRes("order-1", "approved", gateway_trans_id=str(txn.pk), auth_code=txn.authorization_code)
    assert capture == CapRes("order-1", "approved")
    assert r1 == r1_again == CredRes("order-1", "r1", "approved") and r2.status == "approved"
    assert inquiry == InqRes("order-1", "completedOk", eur("100.00"), eur("60.00"), eur("30.00"))
    assert txn.door == Door.SET and txn.status == TransactionStatus.PARTIALLY_REFUNDED
    assert Refund.objects.filter(transaction=txn).count() == 2
    assert auth2.status == "approved" and reversal == RevRes("order-2", "approved")
    assert inquiry2.process_state == "failed"
    assert Transaction.objects.get(merchant_reference="order-2").status == TransactionStatus.VOIDED
    assert echo == b"ping"
    assert set(Event.objects.values_list("type", flat=True)) == {EventType.PAYMENT_SUCCEEDED,
                                                                 EventType.PAYMENT_CANCELLED}


def test_the_same_bans_and_limits_as_every_door(gateway, shop) -> None:  # type: ignore[no-untyped-def]
    async def attempts() -> list[payload.Response]:
        async with client_for(gateway, shop) as gw:
            return [
                await gw.authorize("banned", pan="0000000000000000", expiry=EXPIRY, amount=Decimal("1.00")),
                await gw.authorize("over", pan=HAPPY_VISA, expiry=EXPIRY, amount=Decimal("2500.01")),
                await gw.authorize("bank-no", pan="4000000000000002", expiry=EXPIRY, amount=Decimal("1.00")),
            ]

    banned, over, bank = asyncio.run(attempts())
    assert (banned.status, banned.reason) == ("declined", "Card banned")
    assert (over.status, over.reason) == ("declined", "Card max amount 2500.00")
    assert bank.status == "declined"
    assert Event.objects.filter(type=EventType.PAYMENT_FAILED).count() == 3


def test_many_requests_in_flight_matched_by_msg_tag(gateway, shop, settings, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    settings.PAYMENTS_ACQUIRER = SLOW
    monkeypatch.setenv("SLOW_ACQUIRER_SECONDS", "0.5")

    async def burst() -> tuple[list[payload.Response], int]:
        async with client_for(gateway, shop) as gw:
            amounts = [Decimal("1.99") if n % 3 == 0 else Decimal(f"{n + 1}.00") for n in range(40)]
            answers = await asyncio.gather(*(
                gw.authorize(f"o{n}", pan=HAPPY_VISA, expiry=EXPIRY, amount=amount, capture=True)
                for n, amount in enumerate(amounts)))
            return list(answers), gw.connections

    answers, connections = asyncio.run(burst())
    assert connections == 1
    assert [a.trans_id for a in answers] == [f"o{n}" for n in range(40)]  # each caller got its own answer
    assert all(a.status == "approved" for a in answers)
    by_reference = dict(Transaction.objects.values_list("merchant_reference", "pk"))
    assert all(a.gateway_trans_id == str(by_reference[a.trans_id]) for a in answers)


def test_the_blocking_client_in_a_few_lines(gateway, shop) -> None:  # type: ignore[no-untyped-def]
    with BlockingSetClient("127.0.0.1", gateway.port, transport_id=shop.transport_id, secret=shop.secret) as gw:
        answer = gw.authorize("order-1", pan=HAPPY_VISA, expiry=EXPIRY, amount=Decimal("12.50"))
        pending = [gw.submit(InqReq(f"order-{n}")) for n in range(1, 4)]
        answers = [p.result(20) for p in pending]
    assert answer.status == "approved"
    assert answers[0].process_state == "inProgress"
    assert [a.code for a in answers[1:]] == [payload.UNKNOWN_TRANS_ID] * 2


def test_a_refused_merchant_is_told(gateway, shop) -> None:  # type: ignore[no-untyped-def]
    async def wrong() -> None:
        async with SetClient("127.0.0.1", gateway.port, transport_id=shop.transport_id, secret="wrong", timeout=5):
            pass

    with pytest.raises(GatewayRefused, match="authentication refused"):
        asyncio.run(wrong())


def test_a_lost_connection_is_reconnected_and_the_request_resent(gateway, shop, settings, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    settings.PAYMENTS_ACQUIRER = SLOW
    monkeypatch.setenv("SLOW_ACQUIRER_SECONDS", "1.0")

    async def cut_mid_request() -> tuple[payload.Response, int]:
        async with client_for(gateway, shop) as gw:
            pending = asyncio.ensure_future(gw.authorize("cut", pan=HAPPY_VISA, expiry=EXPIRY,
                                                         amount=Decimal("3.99"), capture=True))
            await asyncio.sleep(0.3)  # the authorization is at the (slow) acquirer
            # The network breaks: the gateway's side of the connection is cut.
            gateway.loop.call_soon_threadsafe(lambda: [c.abort() for c in list(gateway.gateway.gateway.connections)])
            return await pending, gw.connections

    answer, connections = asyncio.run(cut_mid_request())
    assert connections == 2
    assert answer.status == "approved"
    assert Transaction.objects.filter(merchant_reference="cut").count() == 1  # not authorized twice


def test_the_gateways_close_is_answered_after_the_outstanding_answers(start_gateway, shop, settings,
                                                                      monkeypatch) -> None:  # type: ignore[no-untyped-def]
    settings.PAYMENTS_ACQUIRER = SLOW
    monkeypatch.setenv("SLOW_ACQUIRER_SECONDS", "1.0")
    running = start_gateway(t120=10)

    async def during_shutdown() -> payload.Response:
        client = client_for(running, shop)
        await client.connect()
        pending = asyncio.ensure_future(client.authorize("late", pan=HAPPY_VISA, expiry=EXPIRY,
                                                         amount=Decimal("2.99")))
        await asyncio.sleep(0.3)
        began = asyncio.get_running_loop().time()
        stopping = asyncio.wrap_future(running.stop_async())
        answer = await pending
        await asyncio.wait_for(stopping, 20)
        assert asyncio.get_running_loop().time() - began < 9  # the client's close-reply, not t120 (10 s)
        await client.close()  # the gateway is gone: no reconnect
        return answer

    assert asyncio.run(during_shutdown()).status == "approved"


def test_error_answers_come_back_as_messages(gateway, shop) -> None:  # type: ignore[no-untyped-def]
    async def errors() -> list[payload.Response]:
        async with client_for(gateway, shop) as gw:
            return [await gw.capture("nope", amount=Decimal("1.00")),
                    await gw.request(AuthReq("o", HAPPY_VISA, EXPIRY, payload.CurrencyAmount(840, 100, -2)))]

    unknown, currency = asyncio.run(errors())
    assert isinstance(unknown, ErrorMsg) and unknown.code == payload.UNKNOWN_TRANS_ID
    assert isinstance(currency, ErrorMsg) and currency.code == payload.CURRENCY_NOT_ACCEPTED
