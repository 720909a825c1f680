"""The endpoints' dependencies: one ORM session per request, and the user its bearer token names."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated

from fastapi import Depends, HTTPException
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.orm import Session

from app.core.db import engine
from app.core.security import user_id_from_token
from app.models import User


def get_db() -> Iterator[Session]:
    """The request's session; closing it rolls back whatever the request did not commit."""
    with Session(engine) as session:
        yield session


SessionDep = Annotated[Session, Depends(get_db)]


def get_current_user(
    session: SessionDep, credentials: Annotated[HTTPAuthorizationCredentials, Depends(HTTPBearer())]
) -> User:
    """The user the request's bearer token names; 401 if there is none."""
    user_id = user_id_from_token(credentials.credentials)
    user = None if user_id is None else session.get(User, user_id)
    if user is None:
        raise HTTPException(status_code=401, detail="invalid token")
    return user


CurrentUser = Annotated[User, Depends(get_current_user)]
