"""The HTTP server's fast lane (`opensphere.service.fast_lane`): a no-change update check that
the caches can answer is answered right after its headers are parsed, exactly as the ASGI way
answers it; everything else, and every refusal, still takes the ASGI way. Real uvicorn on
loopback, the same protocol `sphere server` runs."""

from __future__ import annotations

import base64
import datetime as dt
import json
import logging
import socket
import time
from collections.abc import Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from device_helpers import (
    BrokenReferences,
    EmulatedDevice,
    challenge,
    make_evidence,
    new_fleet,
    post_evidence,
)
from helpers import assert_problem
from update_helpers import Tenancy, on_loopback, tenancy

from conftest import Api, FixedClock
from opensphere.device.emulator import Fleet
from opensphere.formats.evidence import MAX_EVIDENCE_SIZE

pytestmark = pytest.mark.filterwarnings("ignore::opensphere.rot.EmulatedRootOfTrustWarning")

UNCOMPARED = {"date", "server", "x-request-id"}  # set by uvicorn, or new on every answer
CHALLENGE = "/v1/device/attestation/challenge"
EVIDENCE = "/v1/device/attestation/evidence"
EVIDENCE_HEADERS = {"Content-Type": "application/eat+cwt"}


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Fleet:
    return new_fleet(tmp_path_factory.mktemp("fleet") / "fleet")


@dataclass
class Lane:
    """A served app whose fast lane records whether it answered each request it was asked."""

    base_url: str
    port: int
    answered: list[bool]
    url: str  # the device's timestamp.json
    headers: dict[str, str]  # the device's credential


@pytest.fixture
def lane(api: Api, clock: FixedClock, tmp_path: Path, fleet: Fleet) -> Iterator[Lane]:
    world = tenancy(api, clock, tmp_path, fleet)
    yield from _serve(world, keep_alive=5)


@pytest.fixture
def short_lane(api: Api, clock: FixedClock, tmp_path: Path, fleet: Fleet) -> Iterator[Lane]:
    world = tenancy(api, clock, tmp_path, fleet)
    yield from _serve(world, keep_alive=1)


def _serve(world: Tenancy, keep_alive: int) -> Iterator[Lane]:
    tuf = world.api.client.app.state.tuf
    answered: list[bool] = []
    cached_answer = tuf.cached_answer

    def recording(target: bytes, fields: Mapping[bytes, bytes]) -> object:
        answer = cached_answer(target, fields)
        answered.append(answer is not None)
        return answer

    tuf.cached_answer = recording
    headers = world.credential(world.device())
    trust = world.api.client.get("/v1/device/trust", headers=headers).json()
    try:
        with on_loopback(world.api.client.app, timeout_keep_alive=keep_alive) as base_url:
            yield Lane(
                base_url=base_url,
                port=int(base_url.rsplit(":", 1)[1]),
                answered=answered,
                url=base_url + trust["metadata_path"] + "timestamp.json",
                headers=headers,
            )
    finally:
        del tuf.cached_answer


def _without_request_id(document: dict[str, object]) -> dict[str, object]:
    return {key: value for key, value in document.items() if key != "request_id"}


def _compared(response: httpx.Response) -> dict[str, str]:
    return {name: value for name, value in response.headers.items() if name not in UNCOMPARED}


def test_a_repeated_check_is_answered_by_the_fast_lane_as_the_asgi_way_answers_it(
    api: Api, lane: Lane
) -> None:
    path = lane.url.removeprefix(lane.base_url)
    with httpx.Client() as client:
        first = client.get(lane.url, headers=lane.headers)  # fills the caches
        again = client.get(lane.url, headers=lane.headers)
        etag = again.headers["etag"]
        unchanged = client.get(lane.url, headers={**lane.headers, "If-None-Match": etag})
    assert lane.answered == [False, True, True]
    reference = api.client.get(path, headers=lane.headers)  # in-process: no fast lane
    reference_304 = api.client.get(path, headers={**lane.headers, "If-None-Match": etag})
    assert (first.status_code, again.status_code, unchanged.status_code) == (200, 200, 304)
    assert again.content == first.content == reference.content
    assert _compared(again) == _compared(first) == _compared(reference)
    assert unchanged.content == b""
    assert _compared(unchanged) == _compared(reference_304)
    assert {"date", "server", "x-request-id"} <= set(again.headers)
    assert {"date", "server", "x-request-id"} <= set(unchanged.headers)


def test_the_fast_lane_echoes_a_sane_request_id_and_replaces_any_other(lane: Lane) -> None:
    with httpx.Client() as client:
        client.get(lane.url, headers=lane.headers)
        echoed = client.get(lane.url, headers={**lane.headers, "X-Request-ID": "check-42"})
        replaced = client.get(lane.url, headers={**lane.headers, "X-Request-ID": "bad id!"})
        fresh = [client.get(lane.url, headers=lane.headers) for _ in range(2)]
    assert lane.answered == [False, True, True, True, True]
    assert echoed.headers["x-request-id"] == "check-42"
    assert replaced.headers["x-request-id"] not in ("bad id!", "check-42")
    assert len({answer.headers["x-request-id"] for answer in (replaced, *fresh)}) == 3


def test_a_disabled_device_is_refused_at_once_though_its_check_was_cached(
    api: Api, lane: Lane
) -> None:
    with httpx.Client() as client:
        assert client.get(lane.url, headers=lane.headers).status_code == 200
        assert client.get(lane.url, headers=lane.headers).status_code == 200
        me = client.get(lane.base_url + "/v1/device/me", headers=lane.headers).json()
        tenant = lane.url.split("/tuf/")[1].split("/")[0]
        api.client.patch(
            f"/v1/tenants/{tenant}/devices/{me['device_id']}",
            json={"enabled": False},
            headers=api.operator,
        )
        refused = client.get(lane.url, headers=lane.headers)
    assert lane.answered == [False, True, False]
    assert_problem(refused, 403, "device_refused")


def test_an_expired_credential_is_refused_though_it_was_cached(
    clock: FixedClock, lane: Lane, caplog: pytest.LogCaptureFixture
) -> None:
    with httpx.Client() as client:
        client.get(lane.url, headers=lane.headers)
        assert client.get(lane.url, headers=lane.headers).status_code == 200
        clock.advance(dt.timedelta(hours=25))
        refused = client.get(lane.url, headers=lane.headers)
    assert lane.answered == [False, True, False]
    assert_problem(refused, 403, "device_refused")
    assert (
        f"request {refused.headers['x-request-id']}): bad device credential: the credential expired"
        in caplog.text
    )


def test_what_the_fast_lane_does_not_answer_takes_the_asgi_way(lane: Lane) -> None:
    with httpx.Client() as client:
        client.get(lane.url, headers=lane.headers)
        with_query = client.get(lane.url + "?x=1", headers=lane.headers)
        stranger = client.get(lane.url, headers={"Authorization": "Device forged"})
        anonymous = client.get(lane.url)
        root = client.get(lane.url.replace("timestamp.json", "1.root.json"), headers=lane.headers)
        closing = client.get(lane.url, headers={**lane.headers, "Connection": "close"})
    assert lane.answered == [False, False, False, False, False]
    assert with_query.status_code == 200
    assert_problem(stranger, 403, "device_refused")
    assert_problem(anonymous, 403, "device_refused")
    assert root.status_code == 200
    assert "immutable" in root.headers["cache-control"]
    assert closing.status_code == 200
    assert closing.headers["connection"] == "close"


def _raw_request(lane: Lane, target: str, *extra: str) -> bytes:
    lines = [f"GET {target} HTTP/1.1", "Host: 127.0.0.1"]
    lines += [f"{name}: {value}" for name, value in lane.headers.items()]
    return ("\r\n".join([*lines, *extra]) + "\r\n\r\n").encode()


class Answers:
    """Reads answers off a raw connection, in order (each with a Content-Length, or a 304)."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buffer = b""

    def read(self, count: int) -> list[tuple[int, bytes]]:
        return [self._one() for _ in range(count)]

    def _one(self) -> tuple[int, bytes]:
        while b"\r\n\r\n" not in self.buffer:
            self._more()
        head, self.buffer = self.buffer.split(b"\r\n\r\n", 1)
        status_line, *lines = head.decode("latin-1").split("\r\n")
        headers = dict(line.lower().split(": ", 1) for line in lines)
        length = int(headers.get("content-length", "0"))
        while len(self.buffer) < length:
            self._more()
        body, self.buffer = self.buffer[:length], self.buffer[length:]
        return int(status_line.split()[1]), body

    def _more(self) -> None:
        data = self.sock.recv(65536)
        assert data, "the server closed the connection before answering"
        self.buffer += data


def test_pipelined_requests_are_answered_in_order(lane: Lane) -> None:
    target = lane.url.removeprefix(lane.base_url)
    with httpx.Client() as client:
        timestamp = client.get(lane.url, headers=lane.headers).content
    with socket.create_connection(("127.0.0.1", lane.port), timeout=10) as sock:
        sock.sendall(_raw_request(lane, "/healthz") + _raw_request(lane, target) * 2)
        answers = Answers(sock)
        slow_then_fast = answers.read(3)
        sock.sendall(_raw_request(lane, target) + _raw_request(lane, "/healthz"))
        fast_then_slow = answers.read(2)
    assert slow_then_fast == [(200, b'{"status":"ok"}'), (200, timestamp), (200, timestamp)]
    assert fast_then_slow == [(200, timestamp), (200, b'{"status":"ok"}')]
    # Behind an unfinished answer the fast lane waits its turn: both went the ASGI way.
    assert lane.answered == [False, True]


def test_an_idle_connection_is_closed_after_the_keep_alive_timeout(short_lane: Lane) -> None:
    lane = short_lane
    target = lane.url.removeprefix(lane.base_url)
    with socket.create_connection(("127.0.0.1", lane.port), timeout=10) as sock:
        answers = Answers(sock)
        sock.sendall(_raw_request(lane, target))
        answers.read(1)
        sock.sendall(_raw_request(lane, target))
        assert answers.read(1)[0][0] == 200
        assert lane.answered == [False, True]
        assert sock.recv(1) == b""  # closed by the server after its 1 s keep-alive timeout


def test_a_connection_in_use_outlives_the_keep_alive_timeout(short_lane: Lane) -> None:
    """The timer is not re-armed per request (`FastLaneProtocol`): only idleness counts."""
    lane = short_lane
    target = lane.url.removeprefix(lane.base_url)
    with socket.create_connection(("127.0.0.1", lane.port), timeout=10) as sock:
        answers = Answers(sock)
        for path in (target, "/healthz", target, target, "/healthz", target):
            time.sleep(0.4)  # 2.4 s in all: more than twice the 1 s timeout
            sock.sendall(_raw_request(lane, path))
            assert answers.read(1)[0][0] == 200
        idle_from = time.monotonic()
        assert sock.recv(1) == b""
        idle = time.monotonic() - idle_from
    assert 0.9 <= idle < 3  # closed a timeout after its last answer, not before


# --- the attestation lane --------------------------------------------------------------


@dataclass
class Attesting:
    """A served app whose ASGI way records the paths it answered; a device to attest."""

    base_url: str
    port: int
    asgi_paths: list[str]
    world: Tenancy
    device: EmulatedDevice


@pytest.fixture
def attesting(api: Api, clock: FixedClock, tmp_path: Path, fleet: Fleet) -> Iterator[Attesting]:
    world = tenancy(api, clock, tmp_path, fleet)
    device = world.device()
    app = api.client.app
    asgi_paths: list[str] = []
    answer = app._answer

    async def recording(endpoint, scope, receive, send):  # type: ignore[no-untyped-def]
        asgi_paths.append(scope["path"])
        await answer(endpoint, scope, receive, send)

    app._answer = recording
    try:
        with on_loopback(app) as base_url:
            yield Attesting(base_url, int(base_url.rsplit(":", 1)[1]), asgi_paths, world, device)
    finally:
        del app._answer


def _challenge(client: httpx.Client, attesting: Attesting, **headers: str) -> bytes:
    response = client.post(
        attesting.base_url + CHALLENGE,
        json={"device_id": attesting.device.device_id},
        headers=headers,
    )
    assert response.status_code == 200, response.text
    encoded = response.json()["nonce"]
    return base64.urlsafe_b64decode(encoded + "=" * (-len(encoded) % 4))


def _evidence(attesting: Attesting, nonce: bytes) -> bytes:
    return make_evidence(attesting.device, nonce, attesting.world.clock.now())


def test_the_lane_attests_a_device_as_the_asgi_way_does(api: Api, attesting: Attesting) -> None:
    with httpx.Client() as client:
        evidence = _evidence(attesting, _challenge(client, attesting, **{"X-Request-ID": "c-1"}))
        answer = client.post(
            attesting.base_url + EVIDENCE, content=evidence, headers=EVIDENCE_HEADERS
        )
    assert attesting.asgi_paths == []  # both answered by the lane
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"] == "application/json"
    assert {"date", "server", "x-request-id"} <= set(answer.headers)
    grant = answer.json()
    in_process = post_evidence(
        api, _evidence(attesting, challenge(api, attesting.device.device_id))
    )
    assert set(grant) == set(in_process.json())
    assert grant["device_id"] == attesting.device.device_id
    me = api.client.get("/v1/device/me", headers={"Authorization": f"Device {grant['credential']}"})
    assert me.status_code == 200


def test_a_refusal_in_the_lane_is_the_asgi_ways_problem_document(
    api: Api, attesting: Attesting, caplog: pytest.LogCaptureFixture
) -> None:
    with httpx.Client() as client:
        evidence = _evidence(attesting, _challenge(client, attesting))
        assert (
            client.post(
                attesting.base_url + EVIDENCE, content=evidence, headers=EVIDENCE_HEADERS
            ).status_code
            == 200
        )
        replayed = client.post(
            attesting.base_url + EVIDENCE, content=evidence, headers=EVIDENCE_HEADERS
        )
        malformed = client.post(attesting.base_url + CHALLENGE, content=b"{not json")
    assert attesting.asgi_paths == []
    in_process = post_evidence(api, evidence)
    assert_problem(replayed, 403, "attestation_refused")
    assert replayed.headers["content-type"] == "application/problem+json"
    assert _without_request_id(replayed.json()) == _without_request_id(in_process.json())
    assert replayed.json()["request_id"] == replayed.headers["x-request-id"]
    assert f"request {replayed.headers['x-request-id']}, device" in caplog.text
    assert_problem(malformed, 400, "invalid_request")


def test_an_unexpected_failure_in_the_lane_is_a_logged_500_problem(
    api: Api, attesting: Attesting, caplog: pytest.LogCaptureFixture
) -> None:
    api.client.app.state.attestation.references = BrokenReferences()
    with httpx.Client() as client:
        evidence = _evidence(attesting, _challenge(client, attesting))
        failed = client.post(
            attesting.base_url + EVIDENCE, content=evidence, headers=EVIDENCE_HEADERS
        )
    assert attesting.asgi_paths == []
    assert_problem(failed, 500, "internal_error")
    assert "on fire" not in failed.text
    assert f"(request {failed.headers['x-request-id']})" in caplog.text
    assert "the reference store is on fire" in caplog.text


def test_lane_answers_are_access_logged_as_the_asgi_ways_are(
    api: Api, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="uvicorn.access")
    options = {"access_log": True, "log_level": "info", "log_config": None}
    with on_loopback(api.client.app, **options) as base_url, httpx.Client() as client:
        lane = client.post(base_url + CHALLENGE, json={"device_id": "ab" * 64})
        asgi = client.get(base_url + "/healthz")
    assert lane.status_code == asgi.status_code == 200
    lines = [record.getMessage() for record in caplog.records if record.name == "uvicorn.access"]
    client_address = lines[-1].split(" - ")[0]
    assert client_address.startswith("127.0.0.1:")
    assert lines == [
        f'{client_address} - "POST {CHALLENGE} HTTP/1.1" 200',
        f'{client_address} - "GET /healthz HTTP/1.1" 200',
    ]


@pytest.mark.parametrize("engine_name", ["sqlite"])  # SQLite's database-wide write lock
def test_evidence_that_must_wait_for_the_write_lock_is_finished_by_a_task(
    api: Api, attesting: Attesting
) -> None:
    """The lane runs the evidence at once up to its write; with the lock held by another
    connection the write waits in a worker thread, the loop serves others meanwhile, and a
    task finishes the answer once the lock is free."""
    with httpx.Client() as client:
        evidence = _evidence(attesting, _challenge(client, attesting))
    holder = api.client.app.state.storage.engine.raw_connection()
    holder.cursor().execute("BEGIN IMMEDIATE")
    try:
        with ThreadPoolExecutor(1) as background, httpx.Client() as client:
            posted = background.submit(
                httpx.post,
                attesting.base_url + EVIDENCE,
                content=evidence,
                headers=EVIDENCE_HEADERS,
                timeout=30,
            )
            time.sleep(0.5)
            waiting = not posted.done()
            meanwhile = client.get(attesting.base_url + "/healthz")
            holder.commit()
            answer = posted.result(timeout=30)
    finally:
        holder.close()
    assert waiting
    assert meanwhile.status_code == 200
    assert answer.status_code == 200, answer.text
    assert answer.json()["device_id"] == attesting.device.device_id
    assert EVIDENCE not in attesting.asgi_paths


def test_bodies_the_lane_does_not_take_go_the_asgi_way(attesting: Attesting) -> None:
    oversized = b"x" * (MAX_EVIDENCE_SIZE + 1)
    with httpx.Client() as client:
        too_big = client.post(
            attesting.base_url + EVIDENCE, content=oversized, headers=EVIDENCE_HEADERS
        )
        nonce = _challenge(client, attesting, Connection="close")
        chunked = client.post(
            attesting.base_url + EVIDENCE,
            content=iter([_evidence(attesting, nonce)]),  # no Content-Length: chunked
            headers=EVIDENCE_HEADERS,
        )
    with socket.create_connection(("127.0.0.1", attesting.port), timeout=10) as sock:
        body = json.dumps({"device_id": attesting.device.device_id}).encode()
        sock.sendall(
            f"POST {CHALLENGE} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\nExpect: 100-continue\r\n\r\n".encode()
        )
        answers = Answers(sock)
        continued = answers.read(1)
        sock.sendall(body)
        expected = answers.read(1)
    assert_problem(too_big, 403, "attestation_refused")
    assert chunked.status_code == 200, chunked.text
    assert continued[0][0] == 100
    assert expected[0][0] == 200
    assert attesting.asgi_paths == [EVIDENCE, CHALLENGE, EVIDENCE, CHALLENGE]


def test_requests_pipelined_behind_a_lane_request_wait_their_turn(attesting: Attesting) -> None:
    body = json.dumps({"device_id": attesting.device.device_id}).encode()
    challenge_request = (
        f"POST {CHALLENGE} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n".encode()
        + body
    )
    health = b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"
    with socket.create_connection(("127.0.0.1", attesting.port), timeout=10) as sock:
        sock.sendall(challenge_request + health + challenge_request + challenge_request)
        answers = Answers(sock).read(4)
    assert [status for status, _ in answers] == [200, 200, 200, 200]
    assert answers[1][1] == b'{"status":"ok"}'
    nonces = [json.loads(body)["nonce"] for status, body in (answers[0], *answers[2:])]
    assert len(set(nonces)) == 3
    # The first went the lane; the rest waited behind it and went the ASGI way.
    assert attesting.asgi_paths == [CHALLENGE, CHALLENGE]
