"""The indexed mirror of a terminal's allowed addresses stays in step with ``allowed_ips``."""
from __future__ import annotations

import importlib

import pytest
from django.apps import apps

from terminals.models import Terminal, TerminalAddress
from terminals.services import terminal_create, terminal_identify_by_address
from tests.factories import MerchantFactory, TerminalFactory

pytestmark = pytest.mark.django_db


def mirrored(terminal: Terminal) -> list[str]:
    return sorted(TerminalAddress.objects.filter(terminal=terminal).values_list("address", flat=True))


def test_created_terminals_are_mirrored_with_normalized_addresses() -> None:
    terminal, _ = terminal_create(merchant=MerchantFactory(), allowed_ips=["10.0.0.1", "::ffff:10.0.0.2"])
    assert mirrored(terminal) == ["10.0.0.1", "10.0.0.2"]
    assert terminal_identify_by_address(peer_ip="::ffff:10.0.0.2").pk == terminal.pk  # type: ignore[union-attr]


def test_editing_the_list_adds_and_removes_rows() -> None:
    terminal = TerminalFactory(allowed_ips=["10.0.0.1", "10.0.0.2"])
    terminal.allowed_ips = ["10.0.0.2", "10.0.0.3"]
    terminal.save()  # what the back office does
    assert mirrored(terminal) == ["10.0.0.2", "10.0.0.3"]
    assert terminal_identify_by_address(peer_ip="10.0.0.1") is None
    terminal.allowed_ips = []
    terminal.save(update_fields=["allowed_ips"])
    assert mirrored(terminal) == []


def test_saving_other_fields_leaves_the_mirror_alone() -> None:
    terminal = TerminalFactory(allowed_ips=["10.0.0.1"])
    terminal.label = "Till 9"
    terminal.save(update_fields=["label"])
    assert mirrored(terminal) == ["10.0.0.1"]


def test_disabled_terminals_and_merchants_are_not_identified() -> None:
    terminal = TerminalFactory(allowed_ips=["10.0.0.1"])
    terminal.is_active = False
    terminal.save(update_fields=["is_active"])
    assert terminal_identify_by_address(peer_ip="10.0.0.1") is None
    other = TerminalFactory(allowed_ips=["10.0.0.9"], merchant=MerchantFactory(is_active=False))
    assert terminal_identify_by_address(peer_ip="10.0.0.9") is None
    assert other.pk


def test_an_address_that_is_not_one_identifies_nobody() -> None:
    assert terminal_identify_by_address(peer_ip="not-an-address") is None


def test_the_migration_fills_the_mirror_of_existing_terminals() -> None:
    first = TerminalFactory(allowed_ips=["10.0.0.1", "10.0.0.1", "bogus"])
    second = TerminalFactory(allowed_ips=[])
    TerminalAddress.objects.all().delete()  # as before the migration
    importlib.import_module("terminals.migrations.0004_fill_terminal_addresses").fill(apps, None)
    assert mirrored(first) == ["10.0.0.1"] and mirrored(second) == []
