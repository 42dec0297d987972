"""The runtime's side of applibs: one server per running app, on that app's own connection.

Every request is checked against the app's grants before anything happens; a refusal is
counted (``on_refusal``) and answered as a permission error. Arguments are validated strictly:
an unknown operation or argument is an invalid request, so no request can name another app,
a path or a file. Because the connection is a socket pair made for one run of one app, the
server always knows which app is asking.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import errno
import logging
import socket
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Final, Literal
from uuid import UUID

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictBool,
    StrictFloat,
    StrictInt,
    StrictStr,
    ValidationError,
)

from opensphere.device.applibs import protocol
from opensphere.device.runtime.board import (
    AdcDefinition,
    PeripheralError,
    PeripheralKind,
    PwmState,
    VirtualBoard,
)
from opensphere.device.runtime.network import MAX_TIMEOUT, NetworkSession
from opensphere.device.runtime.policy import (
    CapabilityError,
    Grants,
    check_device_authentication,
    check_peripheral,
    check_storage,
)
from opensphere.device.runtime.storage import MutableStorage, QuotaExceededError
from opensphere.device.runtime.updates import NoPendingUpdateError, UpdateDeferrals

MAX_HANDLES: Final = 64
MAX_DATA: Final = 64 * 1024

log = logging.getLogger(__name__)


def _base64(value: object) -> bytes:
    if not isinstance(value, str):
        raise ValueError("must be base64 text")
    try:
        return base64.b64decode(value, validate=True)
    except binascii.Error as exc:
        raise ValueError(f"not base64: {exc}") from exc


Data = Annotated[bytes, BeforeValidator(_base64), Field(max_length=MAX_DATA)]
Reference = (
    Annotated[StrictInt, Field(ge=0, le=0xFFFF)] | Annotated[StrictStr, Field(max_length=64)]
)
Level = Literal[0, 1]


class _Args(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


class _NoArgs(_Args):
    pass


class _Handle(_Args):
    handle: StrictInt


class _GpioOpen(_Args):
    gpio: Reference
    direction: Literal["input", "output"]
    initial: Level = 0


class _GpioSet(_Args):
    handle: StrictInt
    value: Level


class _AdcInfo(_Args):
    controller: Reference


class _AdcRead(_Args):
    controller: Reference
    channel: Annotated[StrictInt, Field(ge=0, le=63)]


class _UartOpen(_Args):
    uart: Reference


class _UartWrite(_Args):
    handle: StrictInt
    data: Data


class _UartRead(_Args):
    handle: StrictInt
    size: Annotated[StrictInt, Field(ge=1, le=4096)]


class _I2cTransfer(_Args):
    bus: Reference
    address: Annotated[StrictInt, Field(ge=0, le=0x7F)]
    write: Annotated[bytes, BeforeValidator(_base64), Field(max_length=256)]
    read: Annotated[StrictInt, Field(ge=0, le=256)]


class _PwmApply(_Args):
    controller: Reference
    channel: Annotated[StrictInt, Field(ge=0, le=15)]
    period_ns: StrictInt
    duty_cycle_ns: StrictInt
    enabled: StrictBool
    polarity: Literal["normal", "inversed"]


class _StorageData(_Args):
    data: Data


class _Connect(_Args):
    host: Annotated[StrictStr, Field(min_length=1, max_length=253)]
    port: Annotated[StrictInt, Field(ge=1, le=65535)]
    timeout: Annotated[StrictFloat | StrictInt, Field(gt=0, le=MAX_TIMEOUT)]


class _ListenTcp(_Args):
    port: Annotated[StrictInt, Field(ge=1, le=65535)]
    backlog: Annotated[StrictInt, Field(ge=1, le=128)]


class _UdpServer(_Args):
    port: Annotated[StrictInt, Field(ge=1, le=65535)]


class _Defer(_Args):
    minutes: Annotated[StrictInt, Field(ge=1, le=24 * 60)]


class _InvalidRequestError(Exception):
    pass


@dataclass(frozen=True)
class _Reply:
    result: Any = None
    handover: socket.socket | None = None


@dataclass(frozen=True)
class _OpenPeripheral:
    kind: PeripheralKind
    number: int
    output: bool


@dataclass(frozen=True)
class AppContext:
    """What one app's services may use, fixed for the app's run."""

    component_id: UUID
    grants: Grants
    board: VirtualBoard
    storage: MutableStorage | None
    network: NetworkSession
    updates: UpdateDeferrals
    device_certificate: Path | None  # on the device
    device_certificate_for_app: str | None  # the same file, as the app's sandbox shows it
    device_tenant: UUID | None
    now: Callable[[], dt.datetime]
    on_refusal: Callable[[CapabilityError], None]


class AppServices:
    def __init__(self, context: AppContext) -> None:
        self._context = context
        self._handles: dict[int, _OpenPeripheral] = {}
        self._next_handle = 1
        self._operations: dict[str, tuple[type[_Args], Callable[[Any], _Reply]]] = {
            "gpio.open": (_GpioOpen, self._gpio_open),
            "gpio.set": (_GpioSet, self._gpio_set),
            "gpio.get": (_Handle, self._gpio_get),
            "gpio.close": (_Handle, self._close_handle),
            "adc.read": (_AdcRead, self._adc_read),
            "adc.info": (_AdcInfo, self._adc_info),
            "uart.open": (_UartOpen, self._uart_open),
            "uart.write": (_UartWrite, self._uart_write),
            "uart.read": (_UartRead, self._uart_read),
            "uart.close": (_Handle, self._close_handle),
            "i2c.transfer": (_I2cTransfer, self._i2c_transfer),
            "pwm.apply": (_PwmApply, self._pwm_apply),
            "storage.read": (_NoArgs, self._storage_read),
            "storage.write": (_StorageData, self._storage_write),
            "storage.append": (_StorageData, self._storage_append),
            "storage.delete": (_NoArgs, self._storage_delete),
            "storage.info": (_NoArgs, self._storage_info),
            "net.connect": (_Connect, self._net_connect),
            "net.listen_tcp": (_ListenTcp, self._net_listen_tcp),
            "net.udp_server": (_UdpServer, self._net_udp_server),
            "deviceauth.certificate_path": (_NoArgs, self._certificate_path),
            "events.poll": (_NoArgs, self._events_poll),
            "events.defer": (_Defer, self._events_defer),
            "events.resume": (_NoArgs, self._events_resume),
        }

    def serve(self, connection: socket.socket) -> None:
        """Answer requests until the app closes its end or breaks the framing."""
        while True:
            try:
                received = protocol.receive_message(connection)
            except (protocol.ProtocolError, OSError) as exc:
                log.info("app %s: closing applibs connection: %s", self._context.component_id, exc)
                return
            if received is None:
                return
            response, reply = self._answer(received[0])
            handover = [reply.handover.fileno()] if reply and reply.handover else []
            try:
                protocol.send_message(connection, response, handover)
            except OSError:
                return
            finally:
                if reply is not None and reply.handover is not None:
                    reply.handover.close()

    def _answer(self, request: dict[str, Any]) -> tuple[dict[str, Any], _Reply | None]:
        try:
            reply = self._dispatch(request)
        except CapabilityError as exc:
            self._context.on_refusal(exc)
            return _error(protocol.PERMISSION, str(exc)), None
        except (_InvalidRequestError, NoPendingUpdateError) as exc:
            return _error(protocol.INVALID, str(exc)), None
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(map(str, e['loc'])) or 'args'}: {e['msg']}" for e in exc.errors()
            )
            return _error(protocol.INVALID, problems), None
        except QuotaExceededError as exc:
            return _error(protocol.OS_ERROR, str(exc), errno.EDQUOT), None
        except PeripheralError as exc:
            return _error(protocol.OS_ERROR, str(exc), getattr(errno, exc.errno_name)), None
        except OSError as exc:
            return _error(protocol.OS_ERROR, exc.strerror or str(exc), exc.errno or errno.EIO), None
        except Exception:
            # A fault in a service must not end the app's connection, nor reveal internals.
            log.exception("app %s: %s failed", self._context.component_id, request.get("op"))
            return _error(protocol.OS_ERROR, "the device service failed", errno.EIO), None
        return {"ok": True, "result": reply.result}, reply

    def _dispatch(self, request: dict[str, Any]) -> _Reply:
        op, args = request.get("op"), request.get("args", {})
        if set(request) - {"op", "args"} or not isinstance(op, str) or not isinstance(args, dict):
            raise _InvalidRequestError("a request is {'op': name, 'args': {...}}")
        operation = self._operations.get(op)
        if operation is None:
            raise _InvalidRequestError(f"unknown operation {op!r}")
        model, handler = operation
        return handler(model.model_validate(args))

    # Peripherals

    def _peripheral(self, kind: PeripheralKind, reference: int | str) -> int:
        context = self._context
        return check_peripheral(context.grants, context.board.definition, kind, reference)

    def _new_handle(self, peripheral: _OpenPeripheral) -> int:
        if len(self._handles) >= MAX_HANDLES:
            raise OSError(errno.EMFILE, "too many open peripherals")
        handle = self._next_handle
        self._next_handle += 1
        self._handles[handle] = peripheral
        return handle

    def _opened(self, handle: int, kind: PeripheralKind) -> _OpenPeripheral:
        peripheral = self._handles.get(handle)
        if peripheral is None or peripheral.kind != kind:
            raise OSError(errno.EBADF, f"{handle} is not an open {kind} handle")
        return peripheral

    def _gpio_open(self, args: _GpioOpen) -> _Reply:
        number = self._peripheral("Gpio", args.gpio)
        output = args.direction == "output"
        if output:
            self._context.board.gpio_set(number, args.initial)
        return _Reply(self._new_handle(_OpenPeripheral("Gpio", number, output)))

    def _gpio_set(self, args: _GpioSet) -> _Reply:
        pin = self._opened(args.handle, "Gpio")
        if not pin.output:
            raise OSError(errno.EBADF, "the pin was opened for input")
        self._context.board.gpio_set(pin.number, args.value)
        return _Reply()

    def _gpio_get(self, args: _Handle) -> _Reply:
        return _Reply(self._context.board.gpio_get(self._opened(args.handle, "Gpio").number))

    def _close_handle(self, args: _Handle) -> _Reply:
        if self._handles.pop(args.handle, None) is None:
            raise OSError(errno.EBADF, f"{args.handle} is not an open handle")
        return _Reply()

    def _adc_read(self, args: _AdcRead) -> _Reply:
        number = self._peripheral("Adc", args.controller)
        return _Reply(self._context.board.adc_read(number, args.channel))

    def _adc_info(self, args: _AdcInfo) -> _Reply:
        number = self._peripheral("Adc", args.controller)
        definition = self._context.board.definition.find("Adc", number)
        assert isinstance(definition, AdcDefinition)
        return _Reply(
            {
                "sample_bits": definition.sample_bits,
                "reference_voltage": definition.reference_voltage,
            }
        )

    def _uart_open(self, args: _UartOpen) -> _Reply:
        number = self._peripheral("Uart", args.uart)
        return _Reply(self._new_handle(_OpenPeripheral("Uart", number, output=True)))

    def _uart_write(self, args: _UartWrite) -> _Reply:
        uart = self._opened(args.handle, "Uart")
        return _Reply(self._context.board.uart_write(uart.number, args.data))

    def _uart_read(self, args: _UartRead) -> _Reply:
        uart = self._opened(args.handle, "Uart")
        return _Reply(_text(self._context.board.uart_read(uart.number, args.size)))

    def _i2c_transfer(self, args: _I2cTransfer) -> _Reply:
        bus = self._peripheral("I2cMaster", args.bus)
        data = self._context.board.i2c_transfer(bus, args.address, args.write, args.read)
        return _Reply(_text(data))

    def _pwm_apply(self, args: _PwmApply) -> _Reply:
        controller = self._peripheral("Pwm", args.controller)
        state = PwmState(
            period_ns=args.period_ns,
            duty_cycle_ns=args.duty_cycle_ns,
            enabled=args.enabled,
            polarity=args.polarity,
        )
        self._context.board.pwm_apply(controller, args.channel, state)
        return _Reply()

    # Storage

    def _storage(self) -> MutableStorage:
        check_storage(self._context.grants)
        if self._context.storage is None:
            raise OSError(errno.ENODEV, "no storage folder was assigned to this app")
        return self._context.storage

    def _storage_read(self, _: _NoArgs) -> _Reply:
        return _Reply(_text(self._storage().read()))

    def _storage_write(self, args: _StorageData) -> _Reply:
        self._storage().write(args.data)
        return _Reply()

    def _storage_append(self, args: _StorageData) -> _Reply:
        self._storage().append(args.data)
        return _Reply()

    def _storage_delete(self, _: _NoArgs) -> _Reply:
        self._storage().delete()
        return _Reply()

    def _storage_info(self, _: _NoArgs) -> _Reply:
        return _Reply({"quota": self._storage().quota})

    # Network: the session checks the grants itself, as the firewall must.

    def _net_connect(self, args: _Connect) -> _Reply:
        return _Reply(handover=self._context.network.connect(args.host, args.port, args.timeout))

    def _net_listen_tcp(self, args: _ListenTcp) -> _Reply:
        return _Reply(handover=self._context.network.listen_tcp(args.port, args.backlog))

    def _net_udp_server(self, args: _UdpServer) -> _Reply:
        return _Reply(handover=self._context.network.udp_server(args.port))

    # Device authentication and system events

    def _certificate_path(self, _: _NoArgs) -> _Reply:
        context = self._context
        check_device_authentication(context.grants, context.device_tenant)
        if context.device_certificate is None or not context.device_certificate.is_file():
            raise OSError(errno.ENOENT, "the device has no certificate yet")
        return _Reply(context.device_certificate_for_app)

    def _events_poll(self, _: _NoArgs) -> _Reply:
        if not self._context.grants.system_event_notifications:
            raise CapabilityError("SystemEventNotifications", "not in the app manifest")
        return _Reply(self._context.updates.poll(self._context.component_id))

    def _events_defer(self, args: _Defer) -> _Reply:
        self._check_deferral()
        until = self._context.updates.defer(
            self._context.component_id, args.minutes, self._context.now()
        )
        return _Reply(until.isoformat())

    def _events_resume(self, _: _NoArgs) -> _Reply:
        self._check_deferral()
        self._context.updates.resume(self._context.component_id)
        return _Reply()

    def _check_deferral(self) -> None:
        if not self._context.grants.software_update_deferral:
            raise CapabilityError("SoftwareUpdateDeferral", "not in the app manifest")


def _text(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _error(kind: str, message: str, code: int | None = None) -> dict[str, Any]:
    error: dict[str, Any] = {"kind": kind, "message": message}
    if code is not None:
        error["errno"] = code
    return {"ok": False, "error": error}
