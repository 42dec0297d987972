"""What the runtime needs to run one app: the hand-over from secure boot.

Secure boot verifies an app image, unpacks it and assigns it a mutable storage folder; it then
hands the runtime an ``AppLaunch``. The runtime trusts the manifest as validated (it is an
``AppManifest``), and checks everything else before the app first starts.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from uuid import UUID

from opensphere.formats.app_manifest import AppManifest, ManifestError, parse_manifest

MANIFEST_FILE = "app_manifest.json"


class AppRefusedError(Exception):
    """The runtime will not start this app; ``problems`` says why, one reason per entry."""

    def __init__(self, app: str, problems: Iterable[str]) -> None:
        self.app = app
        self.problems = tuple(problems)
        super().__init__(f"app {app} refused: " + "; ".join(self.problems))


@dataclass(frozen=True)
class AppLaunch:
    manifest: AppManifest
    app_folder: Path  # the unpacked, verified image body
    component_id: UUID  # from the image package's identity; must match the manifest
    image_id: UUID
    storage_folder: Path | None  # this app's mutable storage; needed if the manifest grants it

    @classmethod
    def from_folder(
        cls, app_folder: Path, *, image_id: UUID, storage_folder: Path | None
    ) -> AppLaunch:
        """Read and validate ``app_manifest.json`` in an app folder (sideloading, tests)."""
        path = app_folder / MANIFEST_FILE
        try:
            manifest = parse_manifest(path.read_bytes())
        except FileNotFoundError:
            raise AppRefusedError(str(app_folder), [f"no {MANIFEST_FILE}"]) from None
        except ManifestError as exc:
            raise AppRefusedError(str(app_folder), exc.problems) from exc
        return cls(
            manifest=manifest,
            app_folder=app_folder,
            component_id=manifest.component_id,
            image_id=image_id,
            storage_folder=storage_folder,
        )

    @property
    def label(self) -> str:
        return f"{self.manifest.name} ({self.component_id})"
