from django.urls import path

from batches.consumers import BatchProgressConsumer

websocket_urlpatterns = [
    path("ws/batches/<int:batch_id>/", BatchProgressConsumer.as_asgi()),
]
