"""The app's async engine and its session factory, created at import from the settings, as apps do."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import async_sessionmaker, create_async_engine

from .config import settings

engine = create_async_engine(settings.database_url)
# expire_on_commit=False: after the request's commit the endpoint's objects are still loaded, and the response
# is built from them without a lazy load (which an AsyncSession cannot do implicitly).
SessionLocal = async_sessionmaker(engine, expire_on_commit=False)
