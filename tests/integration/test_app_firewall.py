"""The app firewall, for real: apps in their own network namespaces, the broker the only way out.

Every server here listens on loopback: 127.0.0.1 is in the test apps' manifests, 127.0.0.2
(also loopback on Linux) is not.
"""

from __future__ import annotations

import socket
import textwrap
import time
import warnings
from collections.abc import Iterator
from pathlib import Path

import pytest
from app_runtime_helpers import (
    Apps,
    LoopbackServer,
    free_port,
    needs_namespaces,
    results,
    running_runtime,
    wait_for,
)

from opensphere.device.runtime import Isolation, IsolationUnavailableWarning, Runtime

ALLOWED = {"AllowedConnections": ["127.0.0.1", "localhost"]}


@pytest.fixture
def apps(tmp_path: Path) -> Apps:
    return Apps(tmp_path / "apps", tmp_path / "device")


@pytest.fixture
def runtime(apps: Apps) -> Iterator[Runtime]:
    with running_runtime(apps.device) as started:
        yield started


@pytest.fixture
def allowed_server() -> Iterator[LoopbackServer]:
    server = LoopbackServer("127.0.0.1")
    yield server
    server.close()


@pytest.fixture
def other_server() -> Iterator[LoopbackServer]:
    server = LoopbackServer("127.0.0.2")
    yield server
    server.close()


_HELPERS = """
    import socket, sys
    from applibs import networking

    def talk(sock):
        with sock:
            sock.sendall(b"ping\\n")
            return sock.makefile("rb").readline().decode().strip()

    def attempt(label, action):
        try:
            print("RESULT", label, "ok:", action())
        except PermissionError as exc:
            print("RESULT", label, "permission:", exc)
        except OSError as exc:
            print("RESULT", label, "failed:", type(exc).__name__)
"""


def with_helpers(code: str) -> str:
    """``code`` after ``talk`` (one request, one answer) and ``attempt`` (print the outcome)."""
    return textwrap.dedent(_HELPERS) + textwrap.dedent(code)


@needs_namespaces
def test_raw_connect_to_host_not_in_manifest_fails_and_brokered_connect_to_allowed_host_succeeds(
    runtime: Runtime,
    apps: Apps,
    allowed_server: LoopbackServer,
    other_server: LoopbackServer,
) -> None:
    launch = apps.write(
        "Firewalled",
        with_helpers(
            """
            allowed, other = int(sys.argv[1]), int(sys.argv[2])
            raw = lambda host, port: talk(socket.create_connection((host, port), timeout=2))
            attempt("raw-other", lambda: raw("127.0.0.2", other))
            attempt("raw-allowed", lambda: raw("127.0.0.1", allowed))
            attempt("broker-allowed", lambda: talk(networking.connect("127.0.0.1", allowed)))
            attempt("broker-name", lambda: talk(networking.connect("localhost", allowed)))
            attempt("broker-other", lambda: networking.connect("127.0.0.2", other))
            """
        ),
        idle=True,
        CmdArgs=[str(allowed_server.port), str(other_server.port)],
        Capabilities=ALLOWED,
    )
    runtime.launch_app(launch)
    outcomes = results(runtime, launch, 5)
    # The app's namespace has only its own loopback: nothing listens there, nothing routes out.
    assert outcomes[0] == "raw-other failed: ConnectionRefusedError"
    assert outcomes[1] == "raw-allowed failed: ConnectionRefusedError"
    assert outcomes[2:4] == ["broker-allowed ok: echo: ping", "broker-name ok: echo: ping"]
    assert outcomes[4] == (
        "broker-other permission: [Errno 1] AllowedConnections: '127.0.0.2' is not in the app "
        "manifest"
    )
    assert len(allowed_server.accepted) == 2
    assert other_server.accepted == []
    assert runtime.app_status(launch.component_id).refusals == {"AllowedConnections": 1}


@needs_namespaces
def test_brokered_socket_cannot_be_reconnected_elsewhere(
    runtime: Runtime,
    apps: Apps,
    allowed_server: LoopbackServer,
    other_server: LoopbackServer,
) -> None:
    # A TCP socket keeps the namespace it was made in: connect(AF_UNSPEC) would disconnect it,
    # and a second connect would reach any host. The app must never hold one.
    launch = apps.write(
        "Reconnector",
        """
        import ctypes, socket, struct, sys
        from applibs import networking
        libc = ctypes.CDLL(None, use_errno=True)
        sock = networking.connect("127.0.0.1", int(sys.argv[1]))
        print("RESULT family", sock.family.name)
        unspec = struct.pack("=H14x", socket.AF_UNSPEC)
        print("RESULT disconnect", libc.connect(sock.fileno(), unspec, len(unspec)))
        target = struct.pack("=H", socket.AF_INET) + struct.pack("!H", int(sys.argv[2]))
        target += socket.inet_aton("127.0.0.2") + bytes(8)
        result = libc.connect(sock.fileno(), target, len(target))
        print("RESULT reconnect", result, ctypes.get_errno() != 0)
        """,
        idle=True,
        CmdArgs=[str(allowed_server.port), str(other_server.port)],
        Capabilities=ALLOWED,
    )
    runtime.launch_app(launch)
    outcomes = results(runtime, launch, 3)
    assert outcomes[0] == "family AF_UNIX"
    assert outcomes[2] == "reconnect -1 True"
    time.sleep(0.2)
    assert other_server.accepted == []


@needs_namespaces
def test_inbound_connections_reach_only_allowed_server_ports(runtime: Runtime, apps: Apps) -> None:
    allowed, other = free_port(), free_port()
    launch = apps.write(
        "Server",
        """
        import sys
        from applibs import networking
        try:
            networking.listen_tcp(int(sys.argv[2]))
        except PermissionError:
            print("RESULT other port refused")
        listener = networking.listen_tcp(int(sys.argv[1]))
        print("RESULT listening")
        connection, _ = listener.accept()
        with connection:
            request = connection.makefile("rb").readline()
            connection.sendall(b"served " + request)
        """,
        idle=True,
        CmdArgs=[str(allowed), str(other)],
        Capabilities={"AllowedTcpServerPorts": [allowed]},
    )
    runtime.launch_app(launch)
    assert results(runtime, launch, 2) == ["other port refused", "listening"]
    with socket.create_connection(("127.0.0.1", allowed), timeout=5) as client:
        client.sendall(b"hello\n")
        assert client.makefile("rb").readline() == b"served hello\n"
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", other), timeout=5).close()


@needs_namespaces
def test_udp_server_answers_senders_and_nobody_else(runtime: Runtime, apps: Apps) -> None:
    port = free_port()
    with (
        socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sender,
        socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as bystander,
    ):
        bystander.bind(("127.0.0.1", 0))
        bystander.settimeout(0.3)
        launch = apps.write(
            "Udp",
            """
            import sys
            from applibs import networking
            server = networking.UdpServer(int(sys.argv[1]))
            print("RESULT ready")
            data, peer = server.recvfrom()
            server.sendto(b"pong " + data, peer)
            server.sendto(b"unsolicited", ("127.0.0.1", int(sys.argv[2])))
            print("RESULT answered")
            """,
            idle=True,
            CmdArgs=[str(port), str(bystander.getsockname()[1])],
            Capabilities={"AllowedUdpServerPorts": [port]},
        )
        runtime.launch_app(launch)
        results(runtime, launch, 1)
        sender.settimeout(5)
        sender.sendto(b"ping", ("127.0.0.1", port))
        assert sender.recvfrom(100)[0] == b"pong ping"
        results(runtime, launch, 2)
        with pytest.raises(TimeoutError):
            bystander.recvfrom(100)
    refusals = wait_for(lambda: runtime.app_status(launch.component_id).refusals)
    assert refusals == {"AllowedUdpServerPorts": 1}


def test_without_namespaces_the_runtime_warns_and_still_checks_applibs_calls(
    apps: Apps, allowed_server: LoopbackServer, other_server: LoopbackServer
) -> None:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        context = running_runtime(apps.device, isolation=Isolation.APPLIBS_ONLY)
        runtime = context.__enter__()
    try:
        assert any(issubclass(w.category, IsolationUnavailableWarning) for w in caught)
        assert runtime.isolation is Isolation.APPLIBS_ONLY
        launch = apps.write(
            "Fallback",
            with_helpers(
                """
                allowed, other = int(sys.argv[1]), int(sys.argv[2])
                attempt("broker-allowed", lambda: talk(networking.connect("127.0.0.1", allowed)))
                attempt("broker-other", lambda: networking.connect("127.0.0.2", other))
                """
            ),
            idle=True,
            CmdArgs=[str(allowed_server.port), str(other_server.port)],
            Capabilities=ALLOWED,
        )
        runtime.launch_app(launch)
        outcomes = results(runtime, launch, 2)
        assert outcomes[0] == "broker-allowed ok: echo: ping"
        assert outcomes[1].startswith("broker-other permission: [Errno 1]")
        assert other_server.accepted == []
    finally:
        context.__exit__(None, None, None)


def test_connecting_refused_by_the_remote_host_is_reported_as_such(
    runtime: Runtime, apps: Apps
) -> None:
    closed = free_port()
    launch = apps.write(
        "Refused",
        with_helpers(
            'attempt("closed", lambda: networking.connect("127.0.0.1", int(sys.argv[1])))'
        ),
        idle=True,
        CmdArgs=[str(closed)],
        Capabilities=ALLOWED,
    )
    runtime.launch_app(launch)
    assert results(runtime, launch, 1) == ["closed failed: ConnectionRefusedError"]
    assert runtime.app_status(launch.component_id).refusals == {}
