"""The app's settings, read from the environment (APP_*) once, when this module is imported."""

from __future__ import annotations

from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="APP_")

    # An async SQLAlchemy URL, e.g. postgresql+asyncpg://app:secret@localhost/app.
    database_url: str = "sqlite+aiosqlite:///app.db"
    # Signs the login tokens.
    secret_key: str = "change-me"  # noqa: S105 (a placeholder: set APP_SECRET_KEY in production)


settings = Settings()
