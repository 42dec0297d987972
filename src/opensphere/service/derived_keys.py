"""MAC keys derived from the key store's device-credential key.

Every service process sharing a key store derives the same keys, so nothing more needs to be
stored or distributed; each purpose gets its own key (HKDF-SHA256 with the purpose as info).
"""

from __future__ import annotations

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.kdf.hkdf import HKDF


def derive_mac_key(credential_key: ec.EllipticCurvePrivateKey, purpose: bytes) -> bytes:
    private_value = credential_key.private_numbers().private_value.to_bytes(32, "big")
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=purpose).derive(private_value)
