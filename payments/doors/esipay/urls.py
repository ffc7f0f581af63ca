from django.urls import path, re_path, register_converter

from . import routing, views

# <esipay_segment:...> matches any segment, even an empty one: a malformed
# value reaches the view and gets esipay's 400, not a 404. Whatever else is
# under /cardpay (a trailing slash, a segment too many or too few) gets the
# door's JSON 404, never Django's HTML one (routing.py).
register_converter(routing.Segment, "esipay_segment")

urlpatterns = [
    path(
        "cardpay/<esipay_segment:merchant>/<esipay_segment:cid>/<esipay_segment:cardnumber>"
        "/<esipay_segment:cardmonth>/<esipay_segment:cardyear>/<esipay_segment:amount>",
        routing.door(views.card_payment),
        name="esipay-cardpay",
    ),
    path("cardpay/<esipay_segment:merchant>/<esipay_segment:transaction>", routing.door(views.refund),
         name="esipay-refund"),
    path("cardpay/<esipay_segment:merchant>/<esipay_segment:transaction>/<esipay_segment:amount>",
         routing.door(views.refund), name="esipay-refund-partial"),
    # Last: everything else under /cardpay, newlines included.
    re_path(r"^cardpay(?:/[\s\S]*)?\Z", routing.unknown_path, name="esipay-unknown-path"),
]
