"""The audit log of staff actions, and secrets waiting to be shown once.

``AuditEntry`` is append-only: the model refuses ``save()`` of an existing
row and ``delete()``, the back office offers neither, and database triggers
(``backoffice.append_only``, installed by a migration) refuse UPDATE and
DELETE on PostgreSQL and SQLite, so neither a bug nor ORM code can rewrite
history. It has no foreign key that could cascade or be nulled: the actor
is kept by id and name, the object by its type, id and text as they were.

``ShownOnceSecret`` holds, for a few minutes, the secrets a staff member has
just created (sealed with ``payments.vault``), so that the page showing them
is reached by a redirect (post/redirect/get) and shown once.
"""
from __future__ import annotations

import uuid

from django.conf import settings
from django.db import models
from django.utils import timezone


class AuditAction(models.TextChoices):
    ADD = "add", "added"
    CHANGE = "change", "changed"
    DELETE = "delete", "deleted"
    ROTATE_SECRET = "rotate_secret", "secret rotated"
    ENABLE = "enable", "enabled"
    DISABLE = "disable", "disabled"
    ACTIVATE = "activate", "activated"
    DEACTIVATE = "deactivate", "deactivated"
    REFUND = "refund", "refund requested"
    VOID = "void", "void"
    RESEND = "resend", "webhook resent"


class AppendOnlyError(RuntimeError):
    """An audit entry was about to be changed or deleted."""


class AuditEntry(models.Model):
    at = models.DateTimeField("when", default=timezone.now, db_index=True)
    # No database constraint: a user may be deleted, the entries about what they did stay.
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.DO_NOTHING, db_constraint=False, null=True, blank=True,
        related_name="+",
    )
    actor_username = models.CharField("staff member", max_length=150)
    ip_address = models.GenericIPAddressField("from address", null=True, blank=True)
    action = models.CharField(max_length=16, choices=AuditAction.choices)
    object_type = models.CharField("object type", max_length=100, help_text="app_label.model")
    object_id = models.CharField("object id", max_length=64, blank=True)
    object_repr = models.CharField("object", max_length=200)
    # [{"field": name, "before": value, "after": value}], or {"field": name, "redacted": true}
    # for a secret (the fact that it changed, never its value).
    changes = models.JSONField(default=list, blank=True)
    message = models.CharField(max_length=500, blank=True)

    class Meta:
        ordering = ["-at", "-id"]
        verbose_name = "audit entry"
        verbose_name_plural = "audit log entries"
        default_permissions = ("view",)  # nobody adds, changes or deletes entries by hand
        indexes = [models.Index(fields=["object_type", "object_id"], name="audit_object")]

    def __str__(self) -> str:
        return f"{self.actor_username} {self.get_action_display()} {self.object_repr}"

    def save(self, *args, **kwargs) -> None:  # type: ignore[no-untyped-def]
        if self.pk is not None and not self._state.adding:
            raise AppendOnlyError("the audit log is append-only: an entry is never changed")
        super().save(*args, **kwargs)

    def delete(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        raise AppendOnlyError("the audit log is append-only: an entry is never deleted")


class ShownOnceSecret(models.Model):
    """Secrets waiting for their one view: sealed, bound to a user and session, short-lived."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    session_digest = models.CharField(max_length=64)
    purpose = models.CharField(max_length=100, help_text="app_label.model of the admin that shows it")
    sealed = models.TextField()
    created_at = models.DateTimeField(default=timezone.now)
    expires_at = models.DateTimeField(db_index=True)

    class Meta:
        default_permissions = ()  # not in the back office: reached only through its redirect
