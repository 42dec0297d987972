"""Attestation nonces that need no row until they are used.

A nonce is `issued_at ‖ random ‖ service tag ‖ device tag` (8 + 8 + 8 + 8 bytes):
`issued_at` is when the service issued it (microseconds since the epoch, big-endian,
increasing within a process, so that two nonces of one device are not issued "at once"); the
service tag is a 64-bit keyed BLAKE2b MAC of the first two parts, the device tag one of them
and the device ID, under a key derived from the service's credential key.
Any process sharing the key store checks a nonce without the database: the service tag says
this service issued it (within `NONCE_TTL`), the device tag that it was issued to this device.
Single use is the storage's part: a device's nonces are used in the order they were issued,
each at most once (`devices.last_nonce_issued_at`).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
from typing import Final

from cryptography.hazmat.primitives.asymmetric import ec

from opensphere.service.derived_keys import derive_mac_key

NONCE_SIZE: Final = 32
NONCE_TTL: Final = dt.timedelta(seconds=60)
CLOCK_SKEW: Final = dt.timedelta(seconds=5)
"""How far in the future another service process's clock may have issued a nonce."""
_STEP_BACK: Final = 1_000_000
"""µs: a clock that steps back further is followed; up to this, issue times keep increasing."""
_TAG_SIZE: Final = 8
_KEY_INFO: Final = b"opensphere attestation nonce v1"


class NonceError(Exception):
    """A nonce this service did not issue to this device, or no longer accepts."""

    def __init__(self, code: str, detail: str) -> None:
        super().__init__(detail)
        self.code = code
        self.detail = detail


class Nonces:
    """Issues and checks the service's nonces under a key every service process shares."""

    def __init__(self, secret: bytes) -> None:
        self.secret = secret
        self._last_issued = 0

    @classmethod
    def derive(cls, credential_key: ec.EllipticCurvePrivateKey) -> Nonces:
        """With a key derived from the credential key, which every service process shares."""
        return cls(derive_mac_key(credential_key, _KEY_INFO))

    def issue(self, device_id: str, now: dt.datetime, random: bytes) -> bytes:
        """A nonce for `device_id`, issued at `now`; `random` is 8 fresh random bytes."""
        if len(random) != 8:
            raise ValueError("a nonce takes 8 random bytes")
        now_us = _microseconds(now)
        if now_us > self._last_issued or self._last_issued - now_us > _STEP_BACK:
            self._last_issued = now_us  # a clock stepped back for good is followed, not fought
        else:
            self._last_issued += 1
        head = self._last_issued.to_bytes(8, "big") + random
        return head + self._service_tag(head) + self._device_tag(head, device_id)

    def check(self, nonce: bytes, device_id: str, now: dt.datetime) -> int:
        """When `nonce` was issued (µs), if it is this service's, `device_id`'s and fresh.

        Raises `NonceError` with the refusal's code otherwise.
        """
        if len(nonce) != NONCE_SIZE:
            raise NonceError("unknown_nonce", f"the nonce is not {NONCE_SIZE} bytes")
        head, service_tag, device_tag = nonce[:16], nonce[16:24], nonce[24:]
        if not hmac.compare_digest(service_tag, self._service_tag(head)):
            raise NonceError("unknown_nonce", "the nonce was not issued by this service")
        if not hmac.compare_digest(device_tag, self._device_tag(head, device_id)):
            raise NonceError("nonce_of_another_device", "the nonce was issued to another device")
        issued_at = int.from_bytes(head[:8], "big")
        now_us = _microseconds(now)
        if issued_at > now_us + _microseconds_of(CLOCK_SKEW):
            raise NonceError("unknown_nonce", "the nonce was issued in the future")
        if issued_at + _microseconds_of(NONCE_TTL) <= now_us:
            expired_at = dt.datetime.fromtimestamp(issued_at / 1e6, dt.UTC) + NONCE_TTL
            raise NonceError("expired_nonce", f"the nonce expired at {expired_at.isoformat()}")
        return issued_at

    def _service_tag(self, head: bytes) -> bytes:
        return hashlib.blake2b(
            head, key=self.secret, digest_size=_TAG_SIZE, person=b"service"
        ).digest()

    def _device_tag(self, head: bytes, device_id: str) -> bytes:
        message = head + device_id.encode("ascii")
        return hashlib.blake2b(
            message, key=self.secret, digest_size=_TAG_SIZE, person=b"device"
        ).digest()


def _microseconds(moment: dt.datetime) -> int:
    return (moment - _EPOCH) // _MICROSECOND


def _microseconds_of(span: dt.timedelta) -> int:
    return span // _MICROSECOND


_EPOCH: Final = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
_MICROSECOND: Final = dt.timedelta(microseconds=1)
