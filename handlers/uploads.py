"""Routes that take a file as their body: streamed, so that its size is checked before it is read.

Every other route has its body read by Tornado (up to the server's max_body_size, which is the JSON limit)
before its handler runs. An upload's limit is larger, so its route streams: `prepare` runs on the headers
alone — authentication, roles, the declared Content-Length — and only then does the connection take the
body, up to this route's limit. An anonymous caller or a file too large is refused without being read."""

from __future__ import annotations

import tornado.web
from tornado.http1connection import HTTP1Connection

from handlers.base import ApiHandler
from infra.config import Settings
from infra.errors import LengthRequired


@tornado.web.stream_request_body
class UploadHandler(ApiHandler):
    _received: bytearray
    _expected: int = 0

    @classmethod
    def body_limit(cls, settings: Settings) -> int:
        return settings.max_upload_bytes

    async def prepare(self) -> None:
        await super().prepare()
        declared = self.request.headers.get("Content-Length", "")
        if not declared.isdigit():  # a chunked upload could not be refused before it is read
            raise LengthRequired()
        self._expected = int(declared)
        self._received = bytearray()
        if isinstance(self.request.connection, HTTP1Connection):
            self.request.connection.set_max_body_size(self.body_limit(self.deps.settings))

    def data_received(self, chunk: bytes) -> None:
        self._received += chunk
        if len(self._received) >= self._expected:  # the verb reads request.body, as on other routes
            self.request.body = bytes(self._received)
            self._received = bytearray()
