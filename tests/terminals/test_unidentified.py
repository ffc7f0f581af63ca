"""Unidentified connections cannot use up the listener (issue 7, item 12).

- the first 110 closes the connection (JSON lines and HTTP);
- connections per source address are capped (TERMINAL_MAX_CONNECTIONS_PER_ADDRESS);
- a connection must identify its terminal within TERMINAL_IDENTIFY_TIMEOUT_SECONDS;
- identification by address is one indexed query, whatever the number of terminals.
"""
from __future__ import annotations

import time

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from terminals.models import TerminalAddress
from terminals.services import terminal_identify_by_address
from tests.factories import MerchantFactory, TerminalFactory

from .conftest import HttpClient, LineClient, connect, wait_closed
from .test_listener_auth import needs_127_0_0_2

pytestmark = pytest.mark.django_db(transaction=True)


def test_the_first_110_closes_and_is_counted(listener, lines, http, terminal) -> None:
    line = lines()
    assert line.request("/token", {"type": "CARD"})["error_code"] == 110
    assert line.is_closed()
    web = http()
    answer = web.get("/token?type=CARD")
    assert answer.status == 401 and answer.headers["connection"] == "close"
    assert wait_closed(web.sock) == b""
    assert listener.counters.unidentified_closed == 2


def test_connections_per_address_are_capped(start_listener, terminal) -> None:
    running = start_listener(max_connections_per_address=2)
    first, second = LineClient(running.port), LineClient(running.port)
    assert first.auth(terminal)["authenticated"] and second.auth(terminal)["authenticated"]
    third = connect(running.port)
    assert wait_closed(third) == b""
    assert running.counters.rejected_per_address == 1
    assert "token" in first.request("/token", {"type": "CARD"})  # the admitted ones are unaffected
    for sock in (first, second):
        sock.close()
    third.close()


@needs_127_0_0_2
def test_the_per_address_cap_leaves_other_addresses_alone(start_listener, terminal) -> None:
    running = start_listener(max_connections_per_address=1)
    here = LineClient(running.port)
    assert here.auth(terminal)["authenticated"] is True
    refused = connect(running.port)
    assert wait_closed(refused) == b""
    elsewhere = LineClient(running.port, source="127.0.0.2")
    assert elsewhere.auth(terminal)["authenticated"] is True
    for client in (here, elsewhere):
        client.close()
    refused.close()


def test_an_unidentified_connection_is_closed_after_the_identify_timeout(start_listener, terminal) -> None:
    running = start_listener(identify_timeout=0.5, idle_timeout=30)
    silent = connect(running.port)
    chatty = connect(running.port)  # blank lines and junk keep it busy, never identified
    started = time.monotonic()
    try:
        while time.monotonic() - started < 5:
            chatty.sendall(b"\n")
            time.sleep(0.05)
    except (BrokenPipeError, ConnectionResetError):
        pass
    assert wait_closed(silent) == b""
    wait_closed(chatty)
    assert time.monotonic() - started < 5
    assert running.counters.handshake_timeouts == 2
    silent.close()
    chatty.close()


def test_identified_connections_are_not_cut_by_the_identify_timeout(start_listener, terminal) -> None:
    running = start_listener(identify_timeout=0.3, idle_timeout=30)
    line = LineClient(running.port)
    assert line.auth(terminal)["authenticated"] is True
    web = HttpClient(running.port)
    assert web.get("/token?type=CARD", auth=(terminal.terminal_id, terminal.secret)).status == 200
    time.sleep(0.8)
    assert "token" in line.request("/token", {"type": "CARD"})
    assert web.get("/token?type=CARD", auth=(terminal.terminal_id, terminal.secret)).status == 200
    assert running.counters.handshake_timeouts == 0
    line.close()
    web.close()


def test_a_terminal_identified_by_its_address_is_identified(start_listener, rules) -> None:
    TerminalFactory(allowed_ips=["127.0.0.1"])
    running = start_listener(identify_timeout=0.3, idle_timeout=30)
    client = LineClient(running.port)
    assert "token" in client.request("/token", {"type": "CARD"})
    time.sleep(0.8)
    assert "token" in client.request("/token", {"type": "CARD"})
    client.close()


# --- identification by address: an indexed query -----------------------------------------------


def test_identification_by_address_is_one_query_whatever_the_number_of_terminals(rules) -> None:
    merchant = MerchantFactory()
    for i in range(60):
        TerminalFactory(merchant=merchant, allowed_ips=[f"10.0.{i // 250}.{i % 250 + 1}", "192.0.2.1"])
    wanted = TerminalFactory(merchant=merchant, allowed_ips=["198.51.100.7"])
    with CaptureQueriesContext(connection) as queries:
        identity = terminal_identify_by_address(peer_ip="198.51.100.7")
    assert identity is not None and identity.pk == wanted.pk
    selects = [q["sql"] for q in queries.captured_queries if q["sql"].lstrip().upper().startswith("SELECT")]
    assert len(selects) == 1
    assert TerminalAddress._meta.db_table in selects[0] and "LIMIT 2" in selects[0]
    with CaptureQueriesContext(connection) as queries:
        assert terminal_identify_by_address(peer_ip="203.0.113.9") is None  # unknown: one query, nothing loaded
        assert terminal_identify_by_address(peer_ip="192.0.2.1") is None  # sixty terminals allow it: ambiguous
    assert len(queries.captured_queries) == 2


def test_the_address_lookup_uses_an_index_on_postgresql(require_postgres, rules) -> None:
    TerminalFactory(allowed_ips=["198.51.100.7"])
    sql, params = (
        TerminalAddress.objects.filter(address="198.51.100.7", terminal__is_active=True,
                                       terminal__merchant__is_active=True)
        .values_list("terminal_id")[:2].query.sql_with_params()
    )
    with connection.cursor() as cursor:
        cursor.execute("SET LOCAL enable_seqscan = off")  # tiny tables: ask whether an index *can* serve it
        cursor.execute("EXPLAIN " + sql, params)
        plan = "\n".join(row[0] for row in cursor.fetchall())
    assert "terminal_address_once" in plan, plan
