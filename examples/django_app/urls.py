"""The host's own views; the playground is not routed here but by the dispatcher in asgi.py."""

from django.http import HttpRequest, JsonResponse
from django.urls import path


def index(request: HttpRequest) -> JsonResponse:
    return JsonResponse({"app": "django host", "playground": "/api/v1/playground/"})


urlpatterns = [path("", index)]
