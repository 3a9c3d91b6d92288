"""Logging to stderr with time and level, as text or as one JSON object per line; CTS
level names map onto Python's. A line logged while an API request is handled carries its
request id (the one in the answer's error body), so a client's report finds its lines."""

from __future__ import annotations

import logging
import sys
from datetime import UTC, datetime

import orjson

from reconciler._core.logcontext import current_request_id

LEVELS = {
    "TRACE": logging.DEBUG,
    "DEBUG": logging.DEBUG,
    "INFO": logging.INFO,
    "WARN": logging.WARNING,
    "WARNING": logging.WARNING,
    "ERR": logging.ERROR,
    "ERROR": logging.ERROR,
}


class TextFormatter(logging.Formatter):
    def __init__(self) -> None:
        super().__init__(
            "%(asctime)s [%(levelname)s] %(name)s: %(message)s", datefmt="%Y-%m-%dT%H:%M:%S%z"
        )

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        rid = current_request_id()
        return f"{line} (request_id {rid})" if rid and "request_id" not in line else line


class JsonFormatter(logging.Formatter):
    """{"time", "level", "logger", "message"[, "request_id"][, "exception"]}."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        rid = current_request_id()
        if rid:
            entry["request_id"] = rid
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return orjson.dumps(entry).decode()


def setup_logging(level: str = "INFO", log_format: str = "text") -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if log_format == "json" else TextFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(LEVELS.get(level.upper(), logging.INFO))
    # uvicorn's access log is noisy at INFO; keep its errors.
    logging.getLogger("uvicorn.access").setLevel(logging.WARNING)
