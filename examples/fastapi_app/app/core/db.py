"""The app's engine, created at import from the settings, as apps do."""

from __future__ import annotations

from sqlalchemy import create_engine

from .config import settings

engine = create_engine(settings.database_url)
