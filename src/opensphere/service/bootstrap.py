"""First start: upgrade the schema and, when there is no operator yet, create one.

The operator's token is written to a file only its owner can read, never logged.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from opensphere.service.auth.tokens import issue_secret
from opensphere.service.settings import ServiceSettings
from opensphere.service.storage.db import Storage
from opensphere.service.storage.migrate import upgrade_schema
from opensphere.service.storage.models import ApiToken, AuditEvent, User
from opensphere.service.storage.types import new_id

log = logging.getLogger(__name__)

OPERATOR_NAME = "operator"
OPERATOR_TOKEN_DAYS = 365


def prepare_storage(settings: ServiceSettings) -> None:
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    storage = Storage.connect(settings.database_url)
    try:
        upgrade_schema(storage.engine, lock_file=settings.data_dir / ".migrate.lock")
        ensure_operator(storage, settings.operator_token_file, now=dt.datetime.now(dt.UTC))
    finally:
        storage.dispose()


def ensure_operator(storage: Storage, token_file: Path, *, now: dt.datetime) -> bool:
    """Create the operator and its token file if there is no operator; True if it did."""
    with storage.write_session() as session:
        if session.scalar(select(User.id).where(User.is_operator.is_(True)).limit(1)):
            return False
        operator = User(name=OPERATOR_NAME, is_operator=True, created_at=now)
        session.add(operator)
        session.flush()
        token_id = new_id()
        issued = issue_secret(token_id)
        session.add(
            ApiToken(
                id=token_id,
                user_id=operator.id,
                tenant_id=None,
                name="operator bootstrap",
                secret_hash=issued.secret_hash,
                created_by=operator.id,
                created_at=now,
                expires_at=now + dt.timedelta(days=OPERATOR_TOKEN_DAYS),
            )
        )
        session.add(
            AuditEvent(
                tenant_id=None,
                actor_id=operator.id,
                actor_name=OPERATOR_NAME,
                action="operator.bootstrap",
                target_type="user",
                target_id=str(operator.id),
                result="success",
                error_code=None,
                request_id="bootstrap",
                at=now,
                details={"token_file": str(token_file)},
            )
        )
        try:
            session.commit()
        except IntegrityError:
            session.rollback()
            return False
    _write_private(token_file, issued.token + "\n")
    log.warning("created the operator; its token is in %s (readable by you only)", token_file)
    return True


def _write_private(path: Path, content: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(path.name + ".tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(content)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(temporary, path)
