from django.apps import AppConfig


class BackofficeConfig(AppConfig):
    name = "backoffice"
    verbose_name = "Staff and audit"

    def ready(self) -> None:
        from django.db.models.signals import post_migrate

        from .roles import roles_sync_after_migrate

        # The roles migration creates the groups; after every `migrate` they are
        # set again, so the permissions of models added since (a later door's
        # credentials) reach the roles without a migration of their own.
        post_migrate.connect(roles_sync_after_migrate, sender=self, dispatch_uid="backoffice-roles-sync")
