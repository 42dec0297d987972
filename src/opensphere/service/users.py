"""Users exist service-wide; a tenant Administrator adds them by name with a role."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import select
from sqlalchemy.orm import Session

from opensphere.service.errors import NotFoundError
from opensphere.service.storage.models import User


def find_user(session: Session, name: str) -> User | None:
    return session.scalar(select(User).where(User.name == name))


def get_user(session: Session, name: str) -> User:
    user = find_user(session, name)
    if user is None:
        raise NotFoundError(f"there is no user {name!r}", code="user_not_found")
    return user


def get_or_create_user(session: Session, name: str, *, now: dt.datetime) -> User:
    user = find_user(session, name)
    if user is None:
        user = User(name=name, is_operator=False, created_at=now)
        session.add(user)
        session.flush()
    return user
