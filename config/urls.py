from django.contrib import admin
from django.urls import include, path

admin.site.site_header = "Payment gateway back office"
admin.site.site_title = "Gateway back office"
admin.site.index_title = "Operations"

urlpatterns = [
    path("admin/", admin.site.urls),
    path("", include("payments.doors.esipay.urls")),
]
