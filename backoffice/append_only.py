"""Database triggers that keep the audit log append-only (PostgreSQL, SQLite).

Row triggers refuse every UPDATE and DELETE of ``backoffice_auditentry``,
whoever issues it (the ORM, a bug, a hand-typed statement of the
application's user). They do not stop the owner of the table, who can drop
a trigger: keep the application's database role distinct from the owner in
production if the log must resist its operators too.

TRUNCATE is not refused: it needs its own privilege, and a test run empties
every table with it between tests on PostgreSQL (an empty table included,
which a statement trigger would refuse). On SQLite a test run empties
tables with DELETE: the back-office tests drop the triggers around it.
"""
from __future__ import annotations

from django.db.backends.base.base import BaseDatabaseWrapper

TABLE = "backoffice_auditentry"
MESSAGE = "the audit log is append-only"

_POSTGRESQL_INSTALL = [
    f"""
    CREATE OR REPLACE FUNCTION backoffice_audit_append_only() RETURNS trigger
    LANGUAGE plpgsql AS $$
    BEGIN
        RAISE EXCEPTION '{MESSAGE}: % refused', TG_OP USING ERRCODE = 'integrity_constraint_violation';
    END
    $$
    """,
    f"""
    CREATE TRIGGER backoffice_auditentry_append_only
    BEFORE UPDATE OR DELETE ON {TABLE}
    FOR EACH ROW EXECUTE FUNCTION backoffice_audit_append_only()
    """,
]
_POSTGRESQL_UNINSTALL = [
    f"DROP TRIGGER IF EXISTS backoffice_auditentry_append_only ON {TABLE}",
    "DROP FUNCTION IF EXISTS backoffice_audit_append_only()",
]

_SQLITE_INSTALL = [
    f"""
    CREATE TRIGGER IF NOT EXISTS backoffice_auditentry_no_update BEFORE UPDATE ON {TABLE}
    BEGIN SELECT RAISE(ABORT, '{MESSAGE}: UPDATE refused'); END
    """,
    f"""
    CREATE TRIGGER IF NOT EXISTS backoffice_auditentry_no_delete BEFORE DELETE ON {TABLE}
    BEGIN SELECT RAISE(ABORT, '{MESSAGE}: DELETE refused'); END
    """,
]
_SQLITE_UNINSTALL = [
    "DROP TRIGGER IF EXISTS backoffice_auditentry_no_update",
    "DROP TRIGGER IF EXISTS backoffice_auditentry_no_delete",
]

_STATEMENTS = {
    "postgresql": (_POSTGRESQL_INSTALL, _POSTGRESQL_UNINSTALL),
    "sqlite": (_SQLITE_INSTALL, _SQLITE_UNINSTALL),
}


def _run(connection: BaseDatabaseWrapper, statements: list[str]) -> None:
    with connection.cursor() as cursor:
        for statement in statements:
            cursor.execute(statement)


def install(connection: BaseDatabaseWrapper) -> bool:
    """Install the triggers; False on a database this module does not know."""
    if connection.vendor not in _STATEMENTS:
        return False
    _run(connection, _STATEMENTS[connection.vendor][0])
    return True


def uninstall(connection: BaseDatabaseWrapper) -> None:
    if connection.vendor in _STATEMENTS:
        _run(connection, _STATEMENTS[connection.vendor][1])

