"""The app's async HTTP client, and a user (made with the app's own session) logged in through the API."""

import httpx2
import pytest
from app.core.db import SessionLocal
from app.core.security import hash_password
from app.main import app
from app.models import User


@pytest.fixture
async def client(db_sandbox):
    transport = httpx2.ASGITransport(app=app)
    async with httpx2.AsyncClient(transport=transport, base_url="http://test") as client:
        yield client


@pytest.fixture
async def user(db_sandbox):
    async with SessionLocal() as session:
        user = User(email="ada@example.com", hashed_password=hash_password("correct horse"))
        session.add(user)
        await session.commit()
    return user


@pytest.fixture
async def auth(client, user):
    token = (await client.post("/login", json={"email": user.email, "password": "correct horse"})).json()
    return {"Authorization": f"Bearer {token['access_token']}"}
