from django.urls import path

from . import views

urlpatterns = [
    path("iotp", views.iotp, name="iotp"),
    path("iotp/logos/<str:name>", views.logo, name="iotp-logo"),
]
