"""Real software TPMs for tests: swtpm manufactured with an EK certificate, on loopback.

`manufacture` runs `swtpm_setup --create-ek-cert` once with its own `swtpm_localca`
(a throwaway TPM manufacturer CA in a temp folder); `Swtpm` runs one swtpm process on
free loopback ports with the control channel, so a test can power-cycle it (a TPM
reset) while the "host" keeps running.
"""

from __future__ import annotations

import base64
import shutil
import socket
import subprocess
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from tpm2_pytss import ESAPI
from tpm2_pytss.constants import TPM2_SU

from opensphere.rot.tpm import TpmRootOfTrust

TPM_PACKAGES = ("swtpm", "swtpm-tools", "libtss2-dev", "tpm2-tools")
_START_TIMEOUT = 10.0


@dataclass(frozen=True)
class ManufacturedTpm:
    """A TPM state folder and the manufacturer CA that certified its EK."""

    state: Path
    ca_certificate: Path
    """The CA that signed the EK certificate (swtpm-localca's issuer): the one to trust."""
    root_certificate: Path


def manufacture(folder: Path) -> ManufacturedTpm:
    """A new TPM with an RSA 2048 EK and its certificate from a new local CA (~3 s)."""
    folder.mkdir(parents=True, exist_ok=True)
    ca, state = folder / "ca", folder / "state"
    ca.mkdir(exist_ok=True)
    state.mkdir(exist_ok=True)
    (folder / "localca.conf").write_text(
        f"statedir = {ca}\nsigningkey = {ca}/signkey.pem\n"
        f"issuercert = {ca}/issuercert.pem\ncertserial = {ca}/certserial\n"
    )
    (folder / "localca.options").write_text(
        "--platform-manufacturer OpenSphere\n--platform-version 1\n--platform-model test\n"
    )
    (folder / "setup.conf").write_text(
        "create_certs_tool = /usr/bin/swtpm_localca\n"
        f"create_certs_tool_config = {folder}/localca.conf\n"
        f"create_certs_tool_options = {folder}/localca.options\n"
        "active_pcr_banks = sha256\n"
    )
    subprocess.run(
        [
            "swtpm_setup",
            "--tpm2",
            "--tpmstate",
            str(state),
            "--create-ek-cert",
            "--config",
            str(folder / "setup.conf"),
            "--overwrite",
        ],
        check=True,
        capture_output=True,
    )
    return ManufacturedTpm(
        state=state,
        ca_certificate=ca / "issuercert.pem",
        root_certificate=ca / "swtpm-localca-rootca-cert.pem",
    )


def copy_tpm(tpm: ManufacturedTpm, folder: Path) -> ManufacturedTpm:
    """The same TPM (same EK, same seeds) in another state folder, for another process."""
    shutil.copytree(tpm.state, folder)
    return ManufacturedTpm(folder, tpm.ca_certificate, tpm.root_certificate)


def _free_port_pair() -> int:
    """A port P with P+1 free too: libtss2's swtpm TCTI finds the control channel at P+1."""
    while True:
        with socket.socket() as probe, socket.socket() as control:
            probe.bind(("127.0.0.1", 0))
            port: int = probe.getsockname()[1]
            try:
                control.bind(("127.0.0.1", port + 1))
            except OSError:
                continue
            return port


class Swtpm:
    """One running swtpm on loopback; `tcti` is what tpm2-pytss and tpm2-tools take."""

    def __init__(self, state: Path) -> None:
        self.state = state
        self.port = _free_port_pair()
        self.control_port = self.port + 1
        self._process = subprocess.Popen(
            [
                "swtpm",
                "socket",
                "--tpm2",
                "--tpmstate",
                f"dir={state}",
                "--server",
                f"type=tcp,port={self.port},bindaddr=127.0.0.1",
                "--ctrl",
                f"type=tcp,port={self.control_port},bindaddr=127.0.0.1",
                "--flags",
                "not-need-init,startup-clear",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        deadline = time.monotonic() + _START_TIMEOUT
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                break
            except OSError:
                if self._process.poll() is not None or time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError("swtpm did not start") from None
                time.sleep(0.02)

    @property
    def tcti(self) -> str:
        return f"swtpm:host=127.0.0.1,port={self.port}"

    def power_cycle(self) -> None:
        """A TPM reset (power off and on, then TPM2_Startup(CLEAR)): PCRs empty, resetCount+1.

        Orderly, as an OS shutting down does (TPM2_Shutdown first): a power loss would
        count as a dictionary-attack failure and soon lock the TPM's keys out.
        """
        with ESAPI(self.tcti) as esapi:
            esapi.shutdown(TPM2_SU.CLEAR)
        subprocess.run(
            ["swtpm_ioctl", "--tcp", f"127.0.0.1:{self.control_port}", "-i"],
            check=True,
            capture_output=True,
        )
        with ESAPI(self.tcti) as esapi:
            esapi.startup(TPM2_SU.CLEAR)

    def stop(self) -> None:
        if self._process.poll() is None:
            self._process.terminate()
            try:
                self._process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
        if self._process.stderr is not None:
            self._process.stderr.close()

    def __enter__(self) -> Swtpm:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class TpmClaims:
    """Bodies for the TPM claiming routes, from real TPM hosts on one swtpm (role matrix).

    Each body comes from a new host folder, so a new attestation key: every one is fresh.
    """

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.tpm = manufacture(folder / "manufactured")
        self.swtpm = Swtpm(self.tpm.state)

    def close(self) -> None:
        self.swtpm.stop()

    def _open(self, folder: Path) -> TpmRootOfTrust:
        return TpmRootOfTrust.open(folder, tcti=self.swtpm.tcti, boot_id=lambda: b"boot")

    def activation_body(self, folder: Path | None = None) -> dict[str, str]:
        with self._open(folder or self.folder / uuid.uuid4().hex) as rot:
            certificate, ek_public = rot.endorsement()
            return {
                "ek_certificate": x509.load_der_x509_certificate(certificate)
                .public_bytes(Encoding.PEM)
                .decode(),
                "ek_public": _b64(ek_public),
                "ak_public": _b64(rot.attestation_key.public_area),
            }

    def claim_body(self, post: Callable[[dict[str, str]], dict[str, Any]]) -> dict[str, str]:
        """`post` sends an activation body and returns the challenge; the TPM answers it."""
        folder = self.folder / uuid.uuid4().hex
        sealed = post(self.activation_body(folder))
        with self._open(folder) as rot:
            secret = rot.activate_credential(
                _unb64(sealed["credential_blob"]), _unb64(sealed["encrypted_secret"])
            )
        return {"activation_id": sealed["activation_id"], "secret": _b64(secret)}
