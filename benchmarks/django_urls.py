"""The URL conf of ``apps.django_hello``: one view, at the path both benchmark cases request."""

from django.http import HttpResponse
from django.urls import path


def hello(request):
    return HttpResponse(b"Hello, world!", content_type="text/plain")


urlpatterns = [path("b/x", hello), path("x", hello)]
