"""Password hashes and login tokens from the standard library: PBKDF2 and an HMAC-signed user id."""

from __future__ import annotations

import hashlib
import hmac
import secrets

from .config import settings

_ITERATIONS = 100_000


def hash_password(password: str) -> str:
    """A salted PBKDF2 hash of the password, as ``salt$hash`` in hex."""
    salt = secrets.token_bytes(16)
    digest = hashlib.pbkdf2_hmac("sha256", password.encode(), salt, _ITERATIONS)
    return f"{salt.hex()}${digest.hex()}"


def verify_password(password: str, hashed: str) -> bool:
    """Whether the password matches the hash made by hash_password()."""
    salt, digest = hashed.split("$")
    candidate = hashlib.pbkdf2_hmac("sha256", password.encode(), bytes.fromhex(salt), _ITERATIONS)
    return hmac.compare_digest(candidate.hex(), digest)


def create_token(user_id: int) -> str:
    """An opaque bearer token naming the user: ``<id>.<HMAC of the id>``."""
    return f"{user_id}.{_sign(str(user_id))}"


def user_id_from_token(token: str) -> int | None:
    """The user id a token from create_token() names, or None if it was not signed with our key."""
    user_id, _, signature = token.partition(".")
    if not user_id.isdigit() or not hmac.compare_digest(signature, _sign(user_id)):
        return None
    return int(user_id)


def _sign(text: str) -> str:
    return hmac.new(settings.secret_key.encode(), text.encode(), hashlib.sha256).hexdigest()
