"""The trusted key store: which keys may sign what on this device.

Each key has usages: ``os`` (boot-chain images), ``app`` (production apps and board
configuration) and ``capability`` (capability files). A key trusted for apps can therefore
never sign a security monitor, even if the service that holds it is compromised.

The public SDK test key is never stored here: its private half is published, so it counts
only for apps and only on a device with the appDevelopment capability, which
``verify_package(..., allow_test_signed=...)`` decides, not this store.

File format (``keystore/trusted-keys.json``), measured at every boot::

    {"format": 1, "keys": [{"name": "...", "usages": ["os"], "public_key": "<PEM SPKI>"}]}
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Final

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from opensphere.device.errors import DeviceStateError
from opensphere.formats.image_package import TEST_SIGNING_KEY_THUMBPRINT, key_thumbprint

KEYSTORE_FORMAT: Final = 1
MAX_KEYSTORE_SIZE: Final = 256 * 1024


class KeyUsage(StrEnum):
    """What a trusted key may sign."""

    OS = "os"
    APP = "app"
    CAPABILITY = "capability"


@dataclass(frozen=True, slots=True)
class TrustedKey:
    name: str
    public_key: ec.EllipticCurvePublicKey
    usages: frozenset[KeyUsage]

    def __post_init__(self) -> None:
        if not isinstance(self.public_key.curve, ec.SECP256R1):
            raise ValueError("trusted keys are ECDSA P-256 keys")
        if self.thumbprint == TEST_SIGNING_KEY_THUMBPRINT:
            raise ValueError(
                "the public test signing key cannot be a trusted key; test-signed apps run "
                "only with the appDevelopment capability"
            )
        if not self.usages:
            raise ValueError(f"trusted key {self.name!r} has no usage")
        if not self.name or not self.name.isprintable() or len(self.name) > 64:
            raise ValueError("a trusted key's name is 1-64 printable characters")

    @property
    def thumbprint(self) -> bytes:
        return key_thumbprint(self.public_key)


@dataclass(frozen=True, slots=True)
class TrustedKeyStore:
    keys: tuple[TrustedKey, ...]

    def __post_init__(self) -> None:
        thumbprints = [key.thumbprint for key in self.keys]
        if len(set(thumbprints)) != len(thumbprints):
            raise ValueError("a key appears twice in the trusted key store")

    def for_usage(self, usage: KeyUsage) -> Mapping[bytes, ec.EllipticCurvePublicKey]:
        """Thumbprint → key for the keys allowed to sign ``usage``, as verifiers take them."""
        return {key.thumbprint: key.public_key for key in self.keys if usage in key.usages}

    def with_app_keys(self, tenant: TrustedKeyStore) -> TrustedKeyStore:
        """This store plus a tenant's keys, for apps only: whatever usages the tenant's
        entries claim, a key the service holds can never sign the boot chain."""
        known = {key.thumbprint for key in self.keys}
        extra = tuple(
            TrustedKey(key.name, key.public_key, frozenset({KeyUsage.APP}))
            for key in tenant.keys
            if key.thumbprint not in known
        )
        return TrustedKeyStore(self.keys + extra) if extra else self

    def encode(self) -> bytes:
        document = {
            "format": KEYSTORE_FORMAT,
            "keys": [
                {
                    "name": key.name,
                    "usages": sorted(key.usages),
                    "public_key": key.public_key.public_bytes(
                        serialization.Encoding.PEM,
                        serialization.PublicFormat.SubjectPublicKeyInfo,
                    ).decode("ascii"),
                }
                for key in self.keys
            ],
        }
        return json.dumps(document, indent=2, sort_keys=True).encode() + b"\n"

    @classmethod
    def decode(cls, data: bytes) -> TrustedKeyStore:
        """Read the store; any damage refuses the whole store (nothing can then boot)."""
        if len(data) > MAX_KEYSTORE_SIZE:
            raise DeviceStateError("the trusted key store is oversized")
        try:
            document = json.loads(data)
            if document.get("format") != KEYSTORE_FORMAT:
                raise DeviceStateError(
                    f"trusted key store format {document.get('format')!r} is not {KEYSTORE_FORMAT}"
                )
            return cls(tuple(_decode_key(entry) for entry in document["keys"]))
        except DeviceStateError:
            raise
        except (ValueError, TypeError, KeyError, AttributeError) as exc:
            raise DeviceStateError(f"the trusted key store is damaged: {exc}") from exc


def _decode_key(entry: Mapping[str, object]) -> TrustedKey:
    pem = entry["public_key"]
    usages = entry["usages"]
    name = entry["name"]
    if not isinstance(pem, str) or not isinstance(usages, list) or not isinstance(name, str):
        raise TypeError("a key entry has fields of the wrong type")
    public_key = serialization.load_pem_public_key(pem.encode("ascii"))
    if not isinstance(public_key, ec.EllipticCurvePublicKey):
        raise TypeError("a trusted key is not an EC key")
    return TrustedKey(name=name, public_key=public_key, usages=frozenset(map(KeyUsage, usages)))
