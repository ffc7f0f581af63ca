from django.apps import AppConfig


class SecureApiConfig(AppConfig):
    name = "payments.doors.secure_api"
    label = "secure_api"
    verbose_name = "Secure API"
    default_auto_field = "django.db.models.BigAutoField"
