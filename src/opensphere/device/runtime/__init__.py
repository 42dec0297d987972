"""The device's app runtime: isolated app processes, applibs services, the app firewall.

Secure boot hands each verified app over as an ``AppLaunch``; ``Runtime`` runs it.
"""

from __future__ import annotations

from opensphere.device.runtime.board import (
    VIRTUAL_BOARD,
    BoardDefinition,
    BoardError,
    VirtualBoard,
    parse_board,
)
from opensphere.device.runtime.control import ControlClient, ControlError
from opensphere.device.runtime.events import AppEvent, AppEventType, EventSink, QueueEventSink
from opensphere.device.runtime.launch import AppLaunch, AppRefusedError
from opensphere.device.runtime.policy import RestartPolicy
from opensphere.device.runtime.runtime import Runtime, UnknownAppError
from opensphere.device.runtime.sandbox import AppLimits, Isolation, IsolationUnavailableWarning
from opensphere.device.runtime.supervisor import AppState, AppStatus

__all__ = [
    "VIRTUAL_BOARD",
    "AppEvent",
    "AppEventType",
    "AppLaunch",
    "AppLimits",
    "AppRefusedError",
    "AppState",
    "AppStatus",
    "BoardDefinition",
    "BoardError",
    "ControlClient",
    "ControlError",
    "EventSink",
    "Isolation",
    "IsolationUnavailableWarning",
    "QueueEventSink",
    "RestartPolicy",
    "Runtime",
    "UnknownAppError",
    "VirtualBoard",
    "parse_board",
]
