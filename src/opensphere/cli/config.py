"""Sign-in profiles: service URL, token and selected tenant, in a file only the user can read."""

from __future__ import annotations

import json
import os
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path

from opensphere.cli.errors import CliError


def config_dir() -> Path:
    override = os.environ.get("OPENSPHERE_CONFIG_DIR")
    if override:
        return Path(override)
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "opensphere"


@dataclass
class Profile:
    url: str
    token: str
    tenant_id: str | None = None
    tenant_name: str | None = None


@dataclass
class Profiles:
    current: str | None = None
    profiles: dict[str, Profile] = field(default_factory=dict)

    @classmethod
    def load(cls) -> Profiles:
        path = config_dir() / "profiles.json"
        if not path.exists():
            return cls()
        try:
            raw = json.loads(path.read_text())
            return cls(
                current=raw.get("current"),
                profiles={name: Profile(**p) for name, p in raw.get("profiles", {}).items()},
            )
        except (ValueError, TypeError) as exc:
            raise CliError(f"{path} is damaged ({exc}); delete it and sign in again") from exc

    def save(self) -> None:
        folder = config_dir()
        folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        path = folder / "profiles.json"
        temporary = path.with_suffix(".tmp")
        data = {
            "current": self.current,
            "profiles": {name: asdict(p) for name, p in self.profiles.items()},
        }
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as handle:
            json.dump(data, handle, indent=2)
        os.replace(temporary, path)

    def active(self, name: str | None = None) -> Profile:
        chosen = name or os.environ.get("OPENSPHERE_PROFILE") or self.current
        if chosen is None or chosen not in self.profiles:
            raise CliError("you are not signed in: run 'sphere login --url URL --token-file FILE'")
        return self.profiles[chosen]

    def selected_tenant(self, name: str | None = None) -> uuid.UUID | None:
        profile = self.active(name)
        return uuid.UUID(profile.tenant_id) if profile.tenant_id else None
