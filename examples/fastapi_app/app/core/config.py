"""The app's settings, read from the environment (APP_*) once, when this module is imported."""

from __future__ import annotations

from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="APP_")

    # A SQLAlchemy URL, e.g. postgresql+psycopg://app:secret@localhost/app.
    database_url: str = "sqlite:///app.db"
    # Signs the login tokens.
    secret_key: str = "change-me"  # noqa: S105 (a placeholder: set APP_SECRET_KEY in production)


settings = Settings()
