"""The control socket: how ``sphere app start|stop|show-status`` reach a running runtime.

A Unix socket at ``run/control.sock`` in the device folder, open to the runtime's user only
(0600), one request per connection, framed like applibs (``applibs.protocol``). Apps cannot
reach it: their sandbox shows no device folder.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from pydantic import TypeAdapter

from opensphere.device.applibs import protocol
from opensphere.device.runtime.board import PeripheralError
from opensphere.device.runtime.supervisor import AppStatus

if TYPE_CHECKING:
    from opensphere.device.runtime.runtime import Runtime

CONTROL_SOCKET: Final = Path("run", "control.sock")  # in the device folder
TIMEOUT: Final = 30.0
_STATUSES: Final = TypeAdapter(list[AppStatus])

log = logging.getLogger(__name__)


class ControlError(Exception):
    """The runtime refused a control request, or is not running."""


@contextlib.contextmanager
def _short_path(path: Path) -> Iterator[str]:
    """``path`` by way of an open folder: Unix socket paths are limited to 107 bytes."""
    folder = os.open(path.parent, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        yield f"/proc/self/fd/{folder}/{path.name}"
    finally:
        os.close(folder)


def runtime_answers(path: Path) -> bool:
    """Whether a runtime is listening on the control socket at ``path``."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
        try:
            with _short_path(path) as address:
                probe.connect(address)
        except OSError:
            return False
    return True


class ControlServer:
    def __init__(self, runtime: Runtime, path: Path) -> None:
        self._runtime = runtime
        self._path = path
        self._listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        path.unlink(missing_ok=True)
        with _short_path(path) as address:
            self._listener.bind(address)
            os.chmod(address, 0o600)
        self._listener.listen(8)
        self._thread = threading.Thread(target=self._serve, name="control", daemon=True)
        self._operations: dict[str, Callable[[dict[str, Any]], Any]] = {
            "status": lambda _: self._statuses(),
            "start": self._start,
            "stop": self._stop,
            "board": lambda _: runtime.board.snapshot(),
            "set-adc": self._set_adc,
        }

    def start(self) -> None:
        self._thread.start()

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self._listener.shutdown(socket.SHUT_RDWR)
        self._listener.close()
        self._thread.join(timeout=5)
        self._path.unlink(missing_ok=True)

    def _serve(self) -> None:
        while True:
            try:
                connection, _ = self._listener.accept()
            except OSError:
                return
            threading.Thread(target=self._answer, args=(connection,), daemon=True).start()

    def _answer(self, connection: socket.socket) -> None:
        with connection:
            connection.settimeout(TIMEOUT)
            try:
                received = protocol.receive_message(connection)
                if received is None:
                    return
                protocol.send_message(connection, self._handle(received[0]))
            except (protocol.ProtocolError, OSError) as exc:
                log.info("control connection dropped: %s", exc)

    def _handle(self, request: dict[str, Any]) -> dict[str, Any]:
        operation = self._operations.get(str(request.get("op")))
        args = request.get("args", {})
        if operation is None or not isinstance(args, dict):
            return {"ok": False, "error": {"kind": protocol.INVALID, "message": "bad request"}}
        try:
            return {"ok": True, "result": operation(args)}
        except (LookupError, ValueError, TypeError, PeripheralError) as exc:
            return {"ok": False, "error": {"kind": protocol.INVALID, "message": str(exc)}}

    def _statuses(self) -> list[dict[str, Any]]:
        return [status.model_dump(mode="json") for status in self._runtime.status()]

    def _start(self, args: dict[str, Any]) -> dict[str, Any]:
        component_id = self._runtime.find_app(str(args["app"]))
        self._runtime.start_app(component_id)
        return self._runtime.app_status(component_id).model_dump(mode="json")

    def _stop(self, args: dict[str, Any]) -> dict[str, Any]:
        component_id = self._runtime.find_app(str(args["app"]))
        self._runtime.stop_app(component_id)
        return self._runtime.app_status(component_id).model_dump(mode="json")

    def _set_adc(self, args: dict[str, Any]) -> None:
        reference, channel, sample = args["controller"], args["channel"], args["value"]
        if not isinstance(reference, int | str):
            raise TypeError("controller must be a name or a number")
        if not isinstance(channel, int) or not isinstance(sample, int):
            raise TypeError("channel and value must be integers")
        controller = self._runtime.board.definition.lookup("Adc", reference)
        if controller is None:
            raise LookupError(f"the board has no ADC {reference!r}")
        self._runtime.board.adc_set(controller, channel, sample)


class ControlClient:
    """Talks to the runtime of the device whose folder is ``device_folder``."""

    def __init__(self, device_folder: Path) -> None:
        self.path = device_folder / CONTROL_SOCKET

    def status(self) -> list[AppStatus]:
        return _STATUSES.validate_python(self._call("status"))

    def start(self, app: str) -> AppStatus:
        return AppStatus.model_validate(self._call("start", app=app))

    def stop(self, app: str) -> AppStatus:
        return AppStatus.model_validate(self._call("stop", app=app))

    def board(self) -> dict[str, Any]:
        return dict(self._call("board"))

    def set_adc(self, controller: int | str, channel: int, value: int) -> None:
        self._call("set-adc", controller=controller, channel=channel, value=value)

    def _call(self, op: str, **args: Any) -> Any:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as connection:
            connection.settimeout(TIMEOUT)
            try:
                with _short_path(self.path) as address:
                    connection.connect(address)
            except OSError as exc:
                raise ControlError(
                    f"no device runtime answers at {self.path}: {exc.strerror}"
                ) from exc
            protocol.send_message(connection, {"op": op, "args": args})
            received = protocol.receive_message(connection)
        if received is None:
            raise ControlError("the runtime closed the connection without answering")
        response = received[0]
        if response.get("ok") is not True:
            raise ControlError(str(response.get("error", {}).get("message", "refused")))
        return response.get("result")
