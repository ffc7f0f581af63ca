from django.urls import path

from . import views

# <str:...> matches any non-empty segment: a malformed value reaches the view
# and gets esipay's 400, not a 404.
urlpatterns = [
    path(
        "cardpay/<str:merchant>/<str:cid>/<str:cardnumber>/<str:cardmonth>/<str:cardyear>/<str:amount>",
        views.card_payment,
        name="esipay-cardpay",
    ),
    path("cardpay/<str:merchant>/<str:transaction>", views.refund, name="esipay-refund"),
    path("cardpay/<str:merchant>/<str:transaction>/<str:amount>", views.refund, name="esipay-refund-partial"),
]
