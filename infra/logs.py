"""Log lines on stderr: readable text by default, or one JSON object per line (LOG_FORMAT=json) for a log
collector.

A JSON line carries timestamp (UTC, ISO 8601), level, logger, message and pid; an access-log line also
request_id, method, route (the template, e.g. /api/v1/schools/{school_id}), path, status, duration_ms,
uid when the caller was authenticated and code for an error's problem code (server/app.py passes them
as `extra`); a traceback goes in `exception`. Nothing else of a record is written: request bodies and
tokens never reach a log record in the first place, and no field is added just because a caller put
it in `extra`.
"""

from __future__ import annotations

import logging
import sys
from datetime import UTC, datetime
from typing import Any, Literal

import orjson

# The `extra` fields a JSON line carries when a record has them (the access log's).
REQUEST_FIELDS = ("request_id", "method", "route", "path", "status", "duration_ms", "uid", "code")
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s %(message)s"


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "timestamp": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "pid": record.process,
        }
        for name in REQUEST_FIELDS:
            value = record.__dict__.get(name)
            if value is not None:
                line[name] = value
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        elif record.exc_text:
            line["exception"] = record.exc_text
        if record.stack_info:
            line["stack"] = self.formatStack(record.stack_info)
        # default=str: an odd value in a field (a UUID, say) must not cost the whole line
        return orjson.dumps(line, default=str).decode()


def configure(level: str, fmt: Literal["text", "json"]) -> None:
    """Replace the root logger's handlers with one writing to stderr in `fmt`."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else logging.Formatter(TEXT_FORMAT))
    logging.basicConfig(level=level, handlers=[handler], force=True)
    # Warnings (a library's deprecation, say) go through logging too, so that a JSON log stays JSON.
    logging.captureWarnings(True)
