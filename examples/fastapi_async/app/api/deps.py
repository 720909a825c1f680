"""The endpoints' dependencies: one async ORM session per request, and the user its bearer token names."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import Depends, HTTPException
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.ext.asyncio import AsyncSession

from app.core.db import SessionLocal
from app.core.security import user_id_from_token
from app.models import User


async def get_db() -> AsyncIterator[AsyncSession]:
    """The request's session, a unit of work: committed if the endpoint returns, rolled back if it raises."""
    async with SessionLocal() as session:
        try:
            yield session
        except BaseException:
            # An HTTPException (a 404, a 409) or an error: nothing of the request stays.
            await session.rollback()
            raise
        await session.commit()


# scope="function": the commit runs when the endpoint returns, before the response is sent, so a client that
# has its answer can count on the data (and a failing commit is a 500, not a success already sent).
SessionDep = Annotated[AsyncSession, Depends(get_db, scope="function")]


async def get_current_user(
    session: SessionDep, credentials: Annotated[HTTPAuthorizationCredentials, Depends(HTTPBearer())]
) -> User:
    """The user the request's bearer token names; 401 if there is none."""
    user_id = user_id_from_token(credentials.credentials)
    user = None if user_id is None else await session.get(User, user_id)
    if user is None:
        raise HTTPException(status_code=401, detail="invalid token")
    return user


CurrentUser = Annotated[User, Depends(get_current_user)]
