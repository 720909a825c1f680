"""The FastAPI application."""

from __future__ import annotations

from fastapi import FastAPI

from app.api.routes import router

app = FastAPI(title="Items (async)")
app.include_router(router)
