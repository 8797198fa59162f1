from batches.routing import websocket_urlpatterns as batch_websocket_urlpatterns

websocket_urlpatterns = [*batch_websocket_urlpatterns]
