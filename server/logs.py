"""Structured logging: one JSON object per line (or plain text when asked)."""

from __future__ import annotations

import json
import logging
import os
import time


class JsonFormatter(logging.Formatter):
    """Formats a record as JSON with time, level, logger, message, pid and extra `fields`."""

    def format(self, record: logging.LogRecord) -> str:
        """The record as one JSON line."""
        entry = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
            "pid": os.getpid(),
        }
        fields = getattr(record, "fields", None)
        if isinstance(fields, dict):
            entry.update(fields)
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


class TextFormatter(logging.Formatter):
    """Plain `level logger message key=value ...` lines."""

    def format(self, record: logging.LogRecord) -> str:
        """The record as one text line."""
        fields = getattr(record, "fields", None) or {}
        extra = " ".join(f"{k}={v}" for k, v in fields.items())
        line = f"{record.levelname} {record.name} {record.getMessage()}"
        return f"{line} {extra}" if extra else line


def configure_logging(json_lines: bool = True, level: int = logging.INFO) -> None:
    """Route the service's loggers to stderr in the chosen format (idempotent)."""
    logger = logging.getLogger("soundscape")
    if any(getattr(h, "_soundscape", False) for h in logger.handlers):
        return
    handler = logging.StreamHandler()
    handler._soundscape = True  # type: ignore[attr-defined]
    handler.setFormatter(JsonFormatter() if json_lines else TextFormatter())
    logger.addHandler(handler)
    logger.setLevel(level)
    logger.propagate = False
