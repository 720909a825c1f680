"""The endpoints: coroutines on the event loop. The request's session (deps.get_db) commits when one returns."""

from __future__ import annotations

import asyncio

from fastapi import APIRouter, HTTPException
from sqlalchemy import Select, func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import selectinload

from app.core.db import SessionLocal
from app.core.security import create_token, hash_password, verify_password
from app.models import Item, User
from app.schemas import ItemCreate, ItemPublic, ItemUpdate, Login, Summary, Token, UserCreate, UserPublic

from .deps import CurrentUser, SessionDep

router = APIRouter()


@router.post("/users/", response_model=UserPublic, status_code=201)
async def create_user(session: SessionDep, user_in: UserCreate) -> User:
    user = User(
        email=user_in.email, full_name=user_in.full_name, hashed_password=hash_password(user_in.password)
    )
    session.add(user)
    try:
        await session.flush()  # INSERT now, to answer a taken email here rather than at the commit
    except IntegrityError:  # the unique email: the database decides; get_db rolls the request back
        raise HTTPException(
            status_code=409, detail=f"a user with email {user_in.email} already exists"
        ) from None
    return user


@router.post("/login", response_model=Token)
async def login(session: SessionDep, login_in: Login) -> Token:
    user = await session.scalar(select(User).where(User.email == login_in.email))
    if user is None or not verify_password(login_in.password, user.hashed_password):
        raise HTTPException(status_code=400, detail="incorrect email or password")
    return Token(access_token=create_token(user.id))


@router.get("/users/me", response_model=UserPublic)
async def read_me(current_user: CurrentUser) -> User:
    return current_user


@router.delete("/users/me", status_code=204)
async def delete_me(session: SessionDep, current_user: CurrentUser) -> None:
    """Delete the account and, through the relationship's cascade, the items it owns."""
    user = await session.scalar(
        select(User).where(User.id == current_user.id).options(selectinload(User.items))
    )
    await session.delete(user)


@router.get("/summary", response_model=Summary)
async def summary(current_user: CurrentUser) -> Summary:
    """Two counts at once: each query on a session of its own, since one session runs one query at a time."""

    async def count_items() -> int:
        async with SessionLocal() as session:
            return await session.scalar(_count(Item).where(Item.owner_id == current_user.id)) or 0

    async def count_users() -> int:
        async with SessionLocal() as session:
            return await session.scalar(_count(User)) or 0

    my_items, users = await asyncio.gather(count_items(), count_users())
    return Summary(my_items=my_items, users=users)


@router.get("/items/", response_model=list[ItemPublic])
async def read_items(session: SessionDep, current_user: CurrentUser) -> list[Item]:
    return list(await session.scalars(select(Item).where(Item.owner_id == current_user.id).order_by(Item.id)))


@router.post("/items/", response_model=ItemPublic, status_code=201)
async def create_item(session: SessionDep, current_user: CurrentUser, item_in: ItemCreate) -> Item:
    item = Item(**item_in.model_dump(), owner_id=current_user.id)
    session.add(item)
    await _flush_or_409(session, item.title)
    return item


@router.post("/items/import", response_model=list[ItemPublic], status_code=201)
async def import_items(
    session: SessionDep, current_user: CurrentUser, items_in: list[ItemCreate]
) -> list[Item]:
    """Create several items in one transaction: all of them, or (on any error) none."""
    items = []
    for item_in in items_in:
        item = Item(**item_in.model_dump(), owner_id=current_user.id)
        session.add(item)
        # INSERT now: a duplicate title fails here, with the earlier items already written.
        await session.flush()
        items.append(item)
    return items


@router.get("/items/{item_id}", response_model=ItemPublic)
async def read_item(session: SessionDep, current_user: CurrentUser, item_id: int) -> Item:
    return await _own_item(session, current_user, item_id)


@router.patch("/items/{item_id}", response_model=ItemPublic)
async def update_item(
    session: SessionDep, current_user: CurrentUser, item_id: int, item_in: ItemUpdate
) -> Item:
    item = await _own_item(session, current_user, item_id)
    for field, value in item_in.model_dump(exclude_unset=True).items():
        setattr(item, field, value)
    await _flush_or_409(session, item.title)
    return item


@router.delete("/items/{item_id}", status_code=204)
async def delete_item(session: SessionDep, current_user: CurrentUser, item_id: int) -> None:
    await session.delete(await _own_item(session, current_user, item_id))


async def _own_item(session: AsyncSession, current_user: User, item_id: int) -> Item:
    item = await session.get(Item, item_id)
    if item is None or item.owner_id != current_user.id:  # someone else's item is nobody's business
        raise HTTPException(status_code=404, detail="item not found")
    return item


async def _flush_or_409(session: AsyncSession, title: str) -> None:
    try:
        await session.flush()
    except IntegrityError:  # UNIQUE(owner_id, title); get_db rolls the request back
        raise HTTPException(status_code=409, detail=f"you already have an item titled {title}") from None


def _count(model: type[User] | type[Item]) -> Select[tuple[int]]:
    return select(func.count()).select_from(model)
