"""The app's test client, and a user (made with the test's ORM session) logged in through the API."""

import pytest
from app.core.security import hash_password
from app.main import app
from app.models import User
from fastapi.testclient import TestClient


@pytest.fixture
def client(db_sandbox):
    with TestClient(app) as client:
        yield client


@pytest.fixture
def user(sa_session):
    user = User(email="ada@example.com", hashed_password=hash_password("correct horse"))
    sa_session.add(user)
    sa_session.commit()
    return user


@pytest.fixture
def auth(client, user):
    token = client.post("/login", json={"email": user.email, "password": "correct horse"}).json()
    return {"Authorization": f"Bearer {token['access_token']}"}
