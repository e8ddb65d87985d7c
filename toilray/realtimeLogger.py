"""``RealtimeLogger``: log from inside jobs, live to the leader with ``--realTimeLogging``.

Messages always go to the job's own log. With ``--realTimeLogging`` the leader listens on a
UDP port of its node and workers also send each message there as a small JSON datagram, so
it appears in the leader's log while the job is still running (as in Toil, best effort: a
lost datagram is not resent).
"""

from __future__ import annotations

import json
import logging
import socket
import threading
from typing import Any

_LOGGER_NAME = "toilray.worker.realtime"
# The leader's logger for the messages (Toil's is "toil-rt").
LEADER_LOGGER_NAME = "toilray-rt"
_MAX_DATAGRAM = 60000


class RealtimeLogger:
    """Class-level logging methods, as in Toil: ``RealtimeLogger.info("...")``."""

    _logger = logging.getLogger(_LOGGER_NAME)

    @classmethod
    def getLogger(cls) -> logging.Logger:
        return cls._logger

    @classmethod
    def debug(cls, msg: str, *args: Any) -> None:
        cls._logger.debug(msg, *args)

    @classmethod
    def info(cls, msg: str, *args: Any) -> None:
        cls._logger.info(msg, *args)

    @classmethod
    def warning(cls, msg: str, *args: Any) -> None:
        cls._logger.warning(msg, *args)

    @classmethod
    def error(cls, msg: str, *args: Any) -> None:
        cls._logger.error(msg, *args)

    @classmethod
    def critical(cls, msg: str, *args: Any) -> None:
        cls._logger.critical(msg, *args)


class _DatagramSender(logging.Handler):
    def __init__(self, address: tuple[str, int]) -> None:
        super().__init__()
        self._address = address
        self._socket = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)

    def emit(self, record: logging.LogRecord) -> None:
        try:
            payload = json.dumps({"level": record.levelno, "message": record.getMessage()}).encode()
            self._socket.sendto(payload[:_MAX_DATAGRAM], self._address)
        except Exception:
            self.handleError(record)


def install_sender(address: tuple[str, int] | None) -> None:
    """In a worker process: also send RealtimeLogger messages to the leader at ``address``."""
    realtime = logging.getLogger(_LOGGER_NAME)
    for handler in [h for h in realtime.handlers if isinstance(h, _DatagramSender)]:
        realtime.removeHandler(handler)
    if address is not None:
        realtime.addHandler(_DatagramSender(address))


class RealtimeLogServer:
    """In the leader: receive workers' messages and log them as they arrive.

    They are records of ``LEADER_LOGGER_NAME``, outside toilray's own logger tree, so that
    they reach the root logger's handlers as Toil's do: a script that adds a handler sees
    each message with its text as sent (``Toil`` sets the logger's level and handlers).
    """

    def __init__(self, host: str) -> None:
        self._socket = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self._socket.bind((host, 0))
        self.address: tuple[str, int] = (host, self._socket.getsockname()[1])
        self._logger = logging.getLogger(LEADER_LOGGER_NAME)
        # The serving thread looks at _closing between datagrams and at least this often.
        self._socket.settimeout(0.2)
        self._closing = threading.Event()
        self._thread = threading.Thread(target=self._serve, name="toilray-realtime-log", daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while not self._closing.is_set():
            try:
                data, _ = self._socket.recvfrom(_MAX_DATAGRAM + 1024)
            except TimeoutError:
                continue
            except OSError:
                return
            self._show(data)

    def _show(self, data: bytes) -> None:
        try:
            message = json.loads(data)
            self._logger.log(int(message["level"]), str(message["message"]))
        except (ValueError, KeyError, TypeError):
            return

    def close(self) -> None:
        """Stop listening, after showing what already arrived: a job's last messages are in
        the socket's buffer by the time the leader hears that the job finished."""
        self._closing.set()
        self._thread.join()
        self._socket.setblocking(False)
        while True:
            try:
                data, _ = self._socket.recvfrom(_MAX_DATAGRAM + 1024)
            except OSError:
                break
            self._show(data)
        self._socket.close()
