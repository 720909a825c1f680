"""The endpoints: sync functions, which FastAPI runs in worker threads. Each commits what it changes."""

from __future__ import annotations

from fastapi import APIRouter, HTTPException
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from app.core.security import create_token, hash_password, verify_password
from app.models import Item, User
from app.schemas import ItemCreate, ItemPublic, ItemUpdate, Login, Token, UserCreate, UserPublic

from .deps import CurrentUser, SessionDep

router = APIRouter()


@router.post("/users/", response_model=UserPublic, status_code=201)
def create_user(session: SessionDep, user_in: UserCreate) -> User:
    user = User(
        email=user_in.email, full_name=user_in.full_name, hashed_password=hash_password(user_in.password)
    )
    session.add(user)
    try:
        session.commit()
    except IntegrityError:  # the unique email: let the database decide, then undo our transaction
        session.rollback()
        raise HTTPException(
            status_code=409, detail=f"a user with email {user_in.email} already exists"
        ) from None
    session.refresh(user)
    return user


@router.post("/login", response_model=Token)
def login(session: SessionDep, login_in: Login) -> Token:
    user = session.scalar(select(User).where(User.email == login_in.email))
    if user is None or not verify_password(login_in.password, user.hashed_password):
        raise HTTPException(status_code=400, detail="incorrect email or password")
    return Token(access_token=create_token(user.id))


@router.get("/users/me", response_model=UserPublic)
def read_me(current_user: CurrentUser) -> User:
    return current_user


@router.get("/items/", response_model=list[ItemPublic])
def read_items(session: SessionDep, current_user: CurrentUser) -> list[Item]:
    return list(session.scalars(select(Item).where(Item.owner_id == current_user.id).order_by(Item.id)))


@router.post("/items/", response_model=ItemPublic, status_code=201)
def create_item(session: SessionDep, current_user: CurrentUser, item_in: ItemCreate) -> Item:
    item = Item(**item_in.model_dump(), owner_id=current_user.id)
    session.add(item)
    session.commit()
    session.refresh(item)
    return item


@router.post("/items/import", response_model=list[ItemPublic], status_code=201)
def import_items(session: SessionDep, current_user: CurrentUser, items_in: list[ItemCreate]) -> list[Item]:
    """Create several items in one transaction: all of them, or (on any error) none."""
    items = []
    for item_in in items_in:
        item = Item(**item_in.model_dump(), owner_id=current_user.id)
        session.add(item)
        session.flush()  # INSERT now: a duplicate title fails here, with the earlier items already written
        items.append(item)
    session.commit()
    for item in items:
        session.refresh(item)
    return items


@router.get("/items/{item_id}", response_model=ItemPublic)
def read_item(session: SessionDep, current_user: CurrentUser, item_id: int) -> Item:
    return _own_item(session, current_user, item_id)


@router.patch("/items/{item_id}", response_model=ItemPublic)
def update_item(session: SessionDep, current_user: CurrentUser, item_id: int, item_in: ItemUpdate) -> Item:
    item = _own_item(session, current_user, item_id)
    for field, value in item_in.model_dump(exclude_unset=True).items():
        setattr(item, field, value)
    session.commit()
    session.refresh(item)
    return item


@router.delete("/items/{item_id}", status_code=204)
def delete_item(session: SessionDep, current_user: CurrentUser, item_id: int) -> None:
    session.delete(_own_item(session, current_user, item_id))
    session.commit()


def _own_item(session: Session, current_user: User, item_id: int) -> Item:
    item = session.get(Item, item_id)
    if item is None or item.owner_id != current_user.id:  # someone else's item is nobody's business
        raise HTTPException(status_code=404, detail="item not found")
    return item
