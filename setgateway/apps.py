from django.apps import AppConfig


class SetGatewayConfig(AppConfig):
    name = "setgateway"
    verbose_name = "SET gateway"
    default_auto_field = "django.db.models.BigAutoField"
