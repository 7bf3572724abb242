"""Log output of `tidings serve`: one line per record on stderr, as text or as JSON.

* text: ``2025-01-31T12:00:00.123+00:00 INFO    tidings.access: <message>``
* json: ``{"timestamp": "2025-01-31T12:00:00.123+00:00", "level": "INFO", "logger":
  "tidings.access", "message": "...", ...}``, one object per line; a record logged with
  ``extra={"fields": {...}}`` (the access log, `app.accesslog`) has those fields at the top level,
  and a record with an exception has it under "exception".

uvicorn's own loggers (uvicorn.error) go through the same handler: `tidings serve` gives uvicorn
no logging configuration of its own.
"""

from __future__ import annotations

import logging
import sys
from datetime import UTC, datetime

import orjson

FORMATS = ("text", "json")


def _timestamp(record: logging.LogRecord) -> str:
    return datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds")


class TextFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line = f"{_timestamp(record)} {record.levelname:<7} {record.name}: {record.getMessage()}"
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return line


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        out = {"timestamp": _timestamp(record), "level": record.levelname, "logger": record.name,
               "message": record.getMessage()}
        fields = getattr(record, "fields", None)
        if isinstance(fields, dict):
            out.update(fields)
        if record.exc_info:
            out["exception"] = self.formatException(record.exc_info)
        return orjson.dumps(out, default=str).decode()


def level_number(level: str) -> int:
    """A --log-level name ("trace" is debug and more: uvicorn's level 5) as a logging level."""
    return 5 if level == "trace" else getattr(logging, level.upper(), logging.INFO)


def configure(level: str = "info", fmt: str = "text") -> None:
    """The root logger writes to stderr in `fmt` ("text" or "json") from `level` up; replaces
    any handler set before (a worker process configures itself again)."""
    logging.addLevelName(5, "TRACE")
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    logging.basicConfig(level=level_number(level), handlers=[handler], force=True)
