from django.apps import AppConfig


class IotpConfig(AppConfig):
    name = "payments.iotp"
    label = "iotp"
    verbose_name = "IOTP sessions"
    default_auto_field = "django.db.models.BigAutoField"
