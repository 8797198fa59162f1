"""Static files through the ASGI application daphne serves (WhiteNoise on the event loop)."""

from pathlib import Path

from channels.testing import HttpCommunicator
from django.conf import settings

from leadgen.asgi import application

LIVE_JS = Path(settings.BASE_DIR) / "static" / "batches" / "live.js"


async def _get(path: str) -> dict:
    """The response; its body read to the end (a streamed file's last message may carry no body)."""
    communicator = HttpCommunicator(application, "GET", path, headers=[(b"host", b"localhost")])
    await communicator.send_input({"type": "http.request", "body": b""})
    response = await communicator.receive_output(10)
    response["body"] = b""
    while True:
        chunk = await communicator.receive_output(10)
        response["body"] += chunk.get("body", b"")
        if not chunk.get("more_body"):
            return response


async def test_a_static_file_is_served_with_its_content():
    response = await _get("/static/batches/live.js")

    assert response["status"] == 200
    assert response["body"] == LIVE_JS.read_bytes()


async def test_other_paths_go_on_to_django():
    response = await _get("/static/batches/no-such-file.js")

    assert response["status"] == 404
