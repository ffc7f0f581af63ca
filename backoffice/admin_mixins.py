"""What every ModelAdmin of the back office builds on.

``AuditedModelAdmin`` writes an audit entry for every addition, change
(before/after of the fields that changed) and deletion made through it, in
the same database transaction as the change (Django wraps its add, change,
list-edit and delete views in one; bulk deletion is wrapped here). Actions
and custom views record their own entries with ``backoffice.audit``.
``tests/backoffice/test_audit_log.py`` checks that every registered admin
is one.

``ShownOnceAdminMixin`` shows new secrets once, after a redirect (see
``backoffice.shown_once``).
"""
from __future__ import annotations

import json
import logging
from typing import Any

from django.contrib import admin
from django.contrib.admin.models import LogEntry
from django.db import models, router, transaction
from django.http import HttpRequest, HttpResponseNotAllowed, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.cache import add_never_cache_headers

from payments.vault import VaultError

from . import shown_once
from .audit import audit_record, changes_between, snapshot
from .models import AuditAction

_BEFORE_ATTR = "_audit_before"
logger = logging.getLogger(__name__)


def _summary(message: Any) -> str:
    """Django's own words for a change message ("Changed Label and Enabled.")."""
    if not message:
        return ""
    raw = json.dumps(message) if isinstance(message, list) else str(message)
    return LogEntry(change_message=raw).get_change_message()


class AuditedModelAdmin(admin.ModelAdmin):
    # Fields never written to the audit log, beyond those whose name marks a
    # secret (backoffice.audit.is_secret_field).
    audit_exclude: tuple[str, ...] = ()

    def audit_snapshot(self, obj: models.Model) -> dict[str, Any]:
        return snapshot(obj, exclude=self.audit_exclude)

    def _stored(self, obj: models.Model) -> models.Model | None:
        return self.model._base_manager.filter(pk=obj.pk).first()

    def save_form(self, request, form, change):  # type: ignore[no-untyped-def]
        # Called before anything is written (save_model, save_related), by the
        # change form and the list's editable columns alike: the stored row is
        # still the "before", whatever a subclass's save_model does.
        stored = self._stored(form.instance) if change and form.instance.pk is not None else None
        obj = super().save_form(request, form, change)
        if stored is not None:
            setattr(obj, _BEFORE_ATTR, self.audit_snapshot(stored))
        return obj

    def log_addition(self, request, obj, message):  # type: ignore[no-untyped-def]
        result = super().log_addition(request, obj, message)
        stored = self._stored(obj) or obj
        audit_record(request=request, action=AuditAction.ADD, obj=stored,
                     changes=changes_between(None, self.audit_snapshot(stored)), message=_summary(message))
        return result

    def log_change(self, request, obj, message):  # type: ignore[no-untyped-def]
        result = super().log_change(request, obj, message)
        before = obj.__dict__.pop(_BEFORE_ATTR, None)
        stored = self._stored(obj) or obj
        # Without a "before" (a password change form, which has no save_model):
        # Django's message names the fields, the values are never recorded.
        changes = changes_between(before, self.audit_snapshot(stored)) if before is not None else []
        audit_record(request=request, action=AuditAction.CHANGE, obj=stored, changes=changes,
                     message=_summary(message))
        return result

    def _record_deletion(self, request: HttpRequest, obj: models.Model) -> None:
        audit_record(request=request, action=AuditAction.DELETE, obj=obj,
                     changes=changes_between(self.audit_snapshot(obj), None))

    def delete_model(self, request, obj):  # type: ignore[no-untyped-def]
        with transaction.atomic(using=router.db_for_write(self.model)):
            self._record_deletion(request, obj)
            super().delete_model(request, obj)

    def delete_queryset(self, request, queryset):  # type: ignore[no-untyped-def]
        # The bulk "delete selected" action is not wrapped by Django: the
        # entries and the deletion commit together, or neither does.
        with transaction.atomic(using=router.db_for_write(self.model)):
            for obj in queryset:
                self._record_deletion(request, obj)
            super().delete_queryset(request, queryset)


class ShownOnceAdminMixin:
    """Adds ``<admin>/<app>/<model>/shown-once/<handle>/``, the one view of new secrets.

    A view that creates or rotates secrets calls ``shown_once_redirect``
    with JSON-able items; ``shown_once_template`` renders them as
    ``shown`` (a list of dicts) once, and a reload says they were shown.
    """

    shown_once_template: str = "admin/shown_once_base.html"

    def _shown_once_url_name(self) -> str:
        return f"{self.opts.app_label}_{self.opts.model_name}_shown_once"  # type: ignore[attr-defined]

    def get_urls(self):  # type: ignore[no-untyped-def]
        view = self.admin_site.admin_view(self.shown_once_view)  # type: ignore[attr-defined]
        # Before the defaults: their "<path:object_id>/" would take "shown-once/..." too.
        return [path("shown-once/<uuid:handle>/", view, name=self._shown_once_url_name()),
                *super().get_urls()]  # type: ignore[misc]

    def shown_once_redirect(
        self, request: HttpRequest, *, title: str, items: list[dict[str, Any]]
    ) -> HttpResponseRedirect:
        handle = shown_once.stash(request, purpose=self.opts.label_lower,  # type: ignore[attr-defined]
                                  payload={"title": title, "items": items})
        site_name = self.admin_site.name  # type: ignore[attr-defined]
        url = reverse(f"{site_name}:{self._shown_once_url_name()}", args=[handle])
        response = HttpResponseRedirect(url)
        add_never_cache_headers(response)
        return response

    def shown_once_view(  # type: ignore[no-untyped-def]
        self, request: HttpRequest, handle
    ) -> TemplateResponse | HttpResponseNotAllowed:
        if request.method != "GET":  # a HEAD (a link checker) must not use up the one view
            return HttpResponseNotAllowed(["GET"])
        try:
            payload = shown_once.take(request, purpose=self.opts.label_lower, handle=handle)  # type: ignore[attr-defined]
        except VaultError as exc:
            # Sealed under another master key, or tampered with: the row is gone
            # already; say what staff can do (rotate again), not a 500.
            logger.error("a secret waiting to be shown once could not be opened: %s", exc)
            payload = None
        context = {
            **self.admin_site.each_context(request),  # type: ignore[attr-defined]
            "opts": self.opts,  # type: ignore[attr-defined]
            "title": payload["title"] if payload else "Already shown",
            "shown": payload["items"] if payload else [],
            "gone": payload is None,
        }
        # 410 Gone on a reload: the secrets were shown once and are not kept.
        response = TemplateResponse(request, self.shown_once_template, context, status=200 if payload else 410)
        add_never_cache_headers(response)  # Cache-Control: no-store among others
        return response
