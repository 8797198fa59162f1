"""WhiteNoise for an ASGI server, without a thread hop per request.

Django runs a request's middleware on the event loop only while every one of them can; a single
synchronous one in the middle (WhiteNoise's) costs each request two more round trips between the loop
and a thread, which under load (threads waiting for a core) is most of a status read. This subclass
does the same lookup on the loop and serves static files, which are rare, on a thread.
"""

from asgiref.sync import iscoroutinefunction, markcoroutinefunction, sync_to_async
from whitenoise.middleware import WhiteNoiseMiddleware


class StaticFilesMiddleware(WhiteNoiseMiddleware):
    sync_capable = True
    async_capable = True

    def __init__(self, get_response=None, **kwargs):
        super().__init__(get_response, **kwargs)
        if iscoroutinefunction(self.get_response):
            markcoroutinefunction(self)

    def __call__(self, request):
        if iscoroutinefunction(self):
            return self._acall(request)
        return super().__call__(request)

    async def _acall(self, request):
        if self.autorefresh:  # DEBUG: looked up on the disk each time, so not on the loop
            static_file = await sync_to_async(self.find_file)(request.path_info)
        else:
            static_file = self.files.get(request.path_info)
        if static_file is not None:
            return await sync_to_async(self.serve)(static_file, request)
        return await self.get_response(request)
