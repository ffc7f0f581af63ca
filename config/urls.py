from django.conf import settings
from django.contrib import admin
from django.urls import include, path

admin.site.site_header = "Payment gateway back office"
admin.site.site_title = "Gateway back office"
admin.site.index_title = "Operations"
# The gateway has no public site: Django's "View site" link led to a 404.
admin.site.site_url = None

urlpatterns = [
    path("admin/", admin.site.urls),
    path("", include("payments.doors.esipay.urls")),
    path("", include("payments.doors.iotp.urls")),
    path("", include("payments.doors.secure_api.urls")),
]

if settings.DEBUG:  # the demo merchant's server, for `make run` (merchants/demo_views.py)
    from merchants import demo_views

    urlpatterns += [
        path("demo/esipay-return", demo_views.esipay_return, name="demo-esipay-return"),
        path("demo/webhooks", demo_views.webhooks, name="demo-webhooks"),
    ]
