"""EmulatedRootOfTrust: a software stand-in for Pluton or a TPM, for emulated devices.

It is NOT a hardware root of trust, and says so with `EmulatedRootOfTrustWarning` every
time one is opened. It keeps the same promises through its API (the identity private key
is never returned; state only moves forward), but anyone who can read the device folder
can unseal it, and restoring an older copy of both files rolls the counters back. Real
hardware keeps the secret and the counters in silicon.

Files in `<device folder>/rot/`:

- `otp.key`: 32 random bytes, created once with O_EXCL, never rewritten: the emulated
  one-time-programmable fuse bank. Losing it makes the device unusable, as on hardware.
- `state.sealed`: `b"OSRT"` ‖ format version (1 byte) ‖ 12-byte nonce ‖ AES-256-GCM
  ciphertext and tag, with the first 5 bytes as associated data. The AES key is
  HKDF-SHA256(otp.key, info="opensphere/rot/sealed-state/v1"), so a sealed file from
  another device, or a modified or truncated one, fails authentication. The plaintext
  is a deterministic CBOR map: identity key scalar (32 bytes), security state,
  manufacturing state and monotonic counters.

Boot measurements (register and event log) are volatile, like TPM PCRs: kept in memory,
empty after `open`, which stands for a reboot. The emulated RoT is single-owner: one
process opens a device folder at a time.
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import tempfile
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import cbor2
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from opensphere.formats.device_id import DeviceId, device_id_from_public_key
from opensphere.formats.evidence import (
    INITIAL_REGISTER,
    ManufacturingState,
    Measurement,
    SecurityState,
    extend_register,
)
from opensphere.formats.signatures import raw_signature_from_der
from opensphere.rot.errors import (
    AlreadyManufacturedError,
    CounterRollbackError,
    RootOfTrustMissingError,
    SealedStateError,
)
from opensphere.rot.interface import check_manufacturing_transition

ROT_DIRECTORY = "rot"
OTP_FILE = "otp.key"
SEALED_FILE = "state.sealed"
_MAGIC = b"OSRT"
_FORMAT_VERSION = 1
_HEADER = _MAGIC + bytes([_FORMAT_VERSION])
_NONCE_SIZE = 12
_TAG_SIZE = 16
_OTP_SIZE = 32
_SCALAR_SIZE = 32
_MAX_SEALED_SIZE = 64 * 1024
_HKDF_INFO = b"opensphere/rot/sealed-state/v1"
_COUNTER_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
_MAX_COUNTER = 2**64 - 1
_STATE_KEYS = {"identity_key", "security_state", "manufacturing_state", "counters"}


class EmulatedRootOfTrustWarning(UserWarning):
    """The device's root of trust is emulated in software: fine for tests, not for production."""


@dataclass(frozen=True, slots=True)
class _State:
    security_state: SecurityState
    manufacturing_state: ManufacturingState
    counters: Mapping[str, int]


class EmulatedRootOfTrust:
    """A `RootOfTrust` whose secrets live in a sealed file; get one with `manufacture` or `open`."""

    __slots__ = (
        "_device_id",
        "_directory",
        "_identity_key",
        "_log",
        "_register",
        "_seal_key",
        "_state",
    )

    def __init__(
        self,
        *,
        directory: Path,
        seal_key: bytes,
        identity_key: ec.EllipticCurvePrivateKey,
        state: _State,
    ) -> None:
        self._directory = directory
        self._seal_key = seal_key
        self._identity_key = identity_key
        self._device_id = device_id_from_public_key(identity_key.public_key())
        self._state = state
        self._register = INITIAL_REGISTER
        self._log: list[Measurement] = []

    @classmethod
    def manufacture(
        cls, folder: Path, *, security_state: SecurityState = SecurityState.SECURE
    ) -> EmulatedRootOfTrust:
        """Burn the OTP secret and generate the identity key inside; refuse to do it twice."""
        directory = Path(folder) / ROT_DIRECTORY
        if (directory / OTP_FILE).exists() or (directory / SEALED_FILE).exists():
            raise AlreadyManufacturedError(
                f"{directory} already holds a root of trust; a device is manufactured once"
            )
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        otp = secrets.token_bytes(_OTP_SIZE)
        try:
            _write_once(directory / OTP_FILE, otp)
        except FileExistsError as exc:
            raise AlreadyManufacturedError(f"{directory / OTP_FILE} appeared meanwhile") from exc
        rot = cls(
            directory=directory,
            seal_key=_derive_seal_key(otp),
            identity_key=ec.generate_private_key(ec.SECP256R1()),
            state=_State(security_state, ManufacturingState.BLANK, {}),
        )
        rot._persist(rot._state)
        _warn_emulated()
        return rot

    @classmethod
    def open(cls, folder: Path) -> EmulatedRootOfTrust:
        """Unseal an existing root of trust; a damaged one is refused, never re-created."""
        directory = Path(folder) / ROT_DIRECTORY
        otp_path, sealed_path = directory / OTP_FILE, directory / SEALED_FILE
        if not otp_path.exists() and not sealed_path.exists():
            raise RootOfTrustMissingError(
                f"no root of trust in {folder}: manufacture the device first"
            )
        otp = _read(otp_path, "the OTP secret")
        if len(otp) != _OTP_SIZE:
            raise SealedStateError(f"{otp_path} is {len(otp)} bytes, not {_OTP_SIZE}: damaged")
        seal_key = _derive_seal_key(otp)
        identity_key, state = _unseal(seal_key, _read(sealed_path, "the sealed state"))
        rot = cls(directory=directory, seal_key=seal_key, identity_key=identity_key, state=state)
        _warn_emulated()
        return rot

    def __repr__(self) -> str:
        return (
            f"EmulatedRootOfTrust(device_id={self._device_id[:16]}…, directory={self._directory})"
        )

    @property
    def device_id(self) -> DeviceId:
        return self._device_id

    def public_key(self) -> ec.EllipticCurvePublicKey:
        return self._identity_key.public_key()

    def sign(self, data: bytes) -> bytes:
        der = self._identity_key.sign(data, ec.ECDSA(hashes.SHA256()))
        return raw_signature_from_der(der)

    def extend(self, stage: str, digest: bytes) -> None:
        measurement = Measurement(stage=stage, digest=digest)
        self._register = extend_register(self._register, measurement.digest)
        self._log.append(measurement)

    def register(self) -> bytes:
        return self._register

    def event_log(self) -> tuple[Measurement, ...]:
        return tuple(self._log)

    def reset_boot_measurements(self) -> None:
        self._register = INITIAL_REGISTER
        self._log.clear()

    @property
    def security_state(self) -> SecurityState:
        return self._state.security_state

    @property
    def manufacturing_state(self) -> ManufacturingState:
        return self._state.manufacturing_state

    def advance_manufacturing_state(self, new: ManufacturingState) -> None:
        new = ManufacturingState(new)
        check_manufacturing_transition(self._state.manufacturing_state, new)
        if new != self._state.manufacturing_state:
            self._persist(replace(self._state, manufacturing_state=new))

    def counter(self, name: str) -> int:
        return self._state.counters.get(_counter_name(name), 0)

    def bump_counter(self, name: str, to: int) -> None:
        current = self.counter(name)
        if not isinstance(to, int) or isinstance(to, bool) or not 0 <= to <= _MAX_COUNTER:
            raise ValueError(f"a counter value is an integer from 0 to {_MAX_COUNTER}")
        if to < current:
            raise CounterRollbackError(
                f"counter {name!r} is {current} and cannot go down to {to}; "
                "refusing a rollback to older software"
            )
        if to > current:
            self._persist(replace(self._state, counters={**self._state.counters, name: to}))

    def _persist(self, state: _State) -> None:
        """Write first, then adopt: a failed write leaves memory matching the disk."""
        scalar = self._identity_key.private_numbers().private_value.to_bytes(_SCALAR_SIZE, "big")
        plaintext = cbor2.dumps(
            {
                "identity_key": scalar,
                "security_state": state.security_state.value,
                "manufacturing_state": state.manufacturing_state.value,
                "counters": dict(state.counters),
            },
            canonical=True,
        )
        nonce = secrets.token_bytes(_NONCE_SIZE)
        sealed = _HEADER + nonce + AESGCM(self._seal_key).encrypt(nonce, plaintext, _HEADER)
        _write_atomically(self._directory / SEALED_FILE, sealed)
        self._state = state


def _unseal(seal_key: bytes, sealed: bytes) -> tuple[ec.EllipticCurvePrivateKey, _State]:
    if len(sealed) < len(_HEADER) + _NONCE_SIZE + _TAG_SIZE:
        raise SealedStateError(f"the sealed state is truncated ({len(sealed)} bytes)")
    if len(sealed) > _MAX_SEALED_SIZE:
        raise SealedStateError(f"the sealed state is {len(sealed)} bytes, too large to be ours")
    if sealed[: len(_MAGIC)] != _MAGIC:
        raise SealedStateError("the sealed state file is not an OpenSphere sealed state")
    if sealed[: len(_HEADER)] != _HEADER:
        raise SealedStateError(
            f"sealed state format {sealed[len(_MAGIC)]} is not supported (expected "
            f"{_FORMAT_VERSION}); use the OpenSphere version that wrote it"
        )
    nonce = sealed[len(_HEADER) : len(_HEADER) + _NONCE_SIZE]
    try:
        plaintext = AESGCM(seal_key).decrypt(nonce, sealed[len(_HEADER) + _NONCE_SIZE :], _HEADER)
    except InvalidTag as exc:
        raise SealedStateError(
            "the sealed state failed authentication: it was modified or truncated, or it "
            "belongs to another device; the root of trust refuses to open"
        ) from exc
    try:
        return _parse_state(cbor2.loads(plaintext))
    except (cbor2.CBORError, ValueError, TypeError, KeyError) as exc:
        raise SealedStateError(f"the sealed state decrypted but is malformed ({exc})") from exc


def _parse_state(raw: Any) -> tuple[ec.EllipticCurvePrivateKey, _State]:
    if not isinstance(raw, dict) or set(raw) != _STATE_KEYS:
        raise ValueError("unexpected fields")
    scalar, counters = raw["identity_key"], raw["counters"]
    if not isinstance(scalar, bytes) or len(scalar) != _SCALAR_SIZE:
        raise ValueError("bad identity key")
    if not isinstance(counters, dict) or not all(
        isinstance(k, str) and isinstance(v, int) for k, v in counters.items()
    ):
        raise ValueError("bad counters")
    key = ec.derive_private_key(int.from_bytes(scalar, "big"), ec.SECP256R1())
    state = _State(
        security_state=SecurityState(raw["security_state"]),
        manufacturing_state=ManufacturingState(raw["manufacturing_state"]),
        counters=counters,
    )
    return key, state


def _derive_seal_key(otp: bytes) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=_HKDF_INFO).derive(otp)


def _counter_name(name: str) -> str:
    if not isinstance(name, str) or not _COUNTER_NAME.fullmatch(name):
        raise ValueError(
            f"counter names are 1-64 characters of letters, digits, '.', '_' or '-'; got {name!r}"
        )
    return name


def _read(path: Path, what: str) -> bytes:
    try:
        with path.open("rb") as file:
            return file.read(_MAX_SEALED_SIZE + 1)
    except FileNotFoundError as exc:
        raise SealedStateError(
            f"{what} ({path}) is missing: the root of trust is damaged and cannot be opened; "
            "it is never re-created, because a new identity would be a different device"
        ) from exc


def _warn_emulated() -> None:
    warnings.warn(
        "this device uses EmulatedRootOfTrust: its identity key is sealed in a file, not "
        "held by hardware; use it for emulated devices and tests only",
        EmulatedRootOfTrustWarning,
        stacklevel=3,
    )


def _write_once(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as file:
        file.write(data)
        file.flush()
        os.fsync(file.fileno())
    _fsync_directory(path.parent)


def _write_atomically(path: Path, data: bytes) -> None:
    """Temp file, fsync, rename, fsync the folder: a crash leaves the old or the new file."""
    fd, temp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as file:
            file.write(data)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temp)
        raise
    _fsync_directory(path.parent)


def _fsync_directory(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
