"""Celery tasks: thin wrappers that take ids and call the core.

Each is safe to run twice and to be killed at any point: the row it works
on is claimed with a lease (``payments.outbox.lease_claim``), so a duplicate
message finds it held or done, and a killed worker's row is picked up by the
sweep once the lease runs out. ``acks_late`` and ``reject_on_worker_lost``
(settings) make the broker give a message back if its worker dies.
"""
from __future__ import annotations

from config.celery import app

from . import outbox, services


@app.task(name="payments.tasks.deliver_webhook")
def deliver_webhook(delivery_id: int) -> str:
    delivery = outbox.delivery_attempt(delivery_id=delivery_id)
    return "skipped" if delivery is None else str(delivery.status)


@app.task(name="payments.tasks.execute_refund")
def execute_refund(refund_id: int) -> str:
    refund = services.refund_execute(refund_id=refund_id)
    return "missing" if refund is None else str(refund.status)


@app.task(name="payments.tasks.sweep_outbox")
def sweep_outbox() -> dict[str, int]:
    """Beat's periodic safety net: queue again what the broker or a dead worker
    lost, and void esipay authorizations whose confirmation was abandoned."""
    return {**outbox.outbox_sweep(), "unconfirmed_voided": services.payments_void_unconfirmed()}


@app.task(name="payments.tasks.resolve_unknown_outcomes")
def resolve_unknown_outcomes() -> dict[str, int]:
    """Beat's settlement of lost acquirer answers: each transaction left
    processing too long is asked about, recorded, and reversed if it was an
    approval nobody was told about (payments.services.reconciliation)."""
    return services.payments_resolve_unknown()
