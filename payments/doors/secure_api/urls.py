"""The secure API's paths (at the root, as in the spec), its schema and its docs.

``<str:...>`` takes any segment, so that a malformed uuid reaches the view and
gets 997 naming it (not Django's 404); any other path under /account or
/billing is 996, answered after authentication.
"""
from django.urls import path, re_path
from drf_spectacular.views import SpectacularAPIView, SpectacularRedocView, SpectacularSwaggerView

from . import views

urlpatterns = [
    path("account", views.AccountsView.as_view(), name="secure-api-accounts"),
    path("account/<str:uuid>", views.AccountView.as_view(), name="secure-api-account"),
    path("account/<str:uuid>/paymentinfo", views.PaymentInfosView.as_view(), name="secure-api-paymentinfos"),
    path("account/<str:uuid>/paymentinfo/<str:payment_info_id>", views.PaymentInfoView.as_view(),
         name="secure-api-paymentinfo"),
    path("account/<str:uuid>/paymentinfo/<str:payment_info_id>/reverify", views.ReverifyView.as_view(),
         name="secure-api-reverify"),
    path("account/<str:uuid>/paymentinfo/<str:payment_info_id>/cvv", views.CvvView.as_view(),
         name="secure-api-cvv"),
    path("billing/<str:uuid>/transaction", views.ChargeView.as_view(), name="secure-api-charge"),
    path("billing/<str:uuid>/transactions", views.TransactionsView.as_view(), name="secure-api-transactions"),
    path("billing/<str:uuid>/transaction/<str:transaction_id>", views.TransactionView.as_view(),
         name="secure-api-transaction"),
    path("billing/<str:uuid>/transaction/<str:transaction_id>/refund", views.RefundView.as_view(),
         name="secure-api-refund"),
    path("billing/<str:uuid>/transaction/<str:transaction_id>/cancel", views.CancelView.as_view(),
         name="secure-api-cancel"),
    re_path(r"^(?:account|billing)(?:/.*)?$", views.NotFoundView.as_view(), name="secure-api-not-found"),
    path("api/schema/", SpectacularAPIView.as_view(), name="secure-api-schema"),
    path("api/docs/", SpectacularSwaggerView.as_view(url_name="secure-api-schema"), name="secure-api-docs"),
    path("api/redoc/", SpectacularRedocView.as_view(url_name="secure-api-schema"), name="secure-api-redoc"),
]
