"""What the hand-written SQL of the hot path shares: table names and value adaptation.

Terminals are the hottest path of the product: their statements are written
in SQL next to the rules they encode (``tokens``, ``screening``,
``payments``), because compiling them with the ORM cost ~85% of the
listener's CPU (bench/payment_cost.py). Values are always parameters;
table names come from the models, and column names are checked against the
schema by tests/payments/test_hot_path_sql.py. Valid on PostgreSQL and SQLite.
"""
from __future__ import annotations

import enum
from datetime import datetime

from django.db import connection

from merchants.models import Merchant
from terminals.models import Terminal

from ..models import Ban, CardLimit, Token, Transaction
from ..states import TOKEN_HOLDING_STATUSES

TOKEN = Token._meta.db_table
TXN = Transaction._meta.db_table
BAN = Ban._meta.db_table
LIMIT = CardLimit._meta.db_table
TERMINAL = Terminal._meta.db_table
MERCHANT = Merchant._meta.db_table

# The statuses in which a transaction holds its token, as SQL literals.
HOLDING = ", ".join(f"'{status}'" for status in TOKEN_HOLDING_STATUSES)


def adapt_time(moment: datetime) -> object:
    return connection.ops.adapt_datetimefield_value(moment)


def plain(value: object) -> object:
    """Choices members as their values: drivers may dump an Enum by its name."""
    return value.value if isinstance(value, enum.Enum) else value
