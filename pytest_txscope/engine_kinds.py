"""Engines of other libraries in ``Sandbox(engines=[...])``: an integration registers how to pin its kind.

The sandbox pins `pytest_txscope.Engine` objects itself; a SQLAlchemy ``Engine`` is pinned by the SQLAlchemy
integration (`pytest_txscope.sqlalchemy`), which registers itself when imported, and is imported here by name
when a SQLAlchemy engine comes first (the sandbox does not depend on it).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

from .errors import ConfigurationError

__all__ = ["pin_foreign", "register_engine_kind"]

_kinds: list[tuple[Callable[[Any], bool], Callable[[Any, Any], None]]] = []


def register_engine_kind(accepts: Callable[[Any], bool], pin: Callable[[Any, Any], None]) -> None:
    """Let ``Sandbox(engines=[...])`` take another library's engines: ``pin(sandbox, engine)`` pins one that
    ``accepts(engine)`` (the SQLAlchemy integration registers SQLAlchemy's ``Engine`` on import)."""
    _kinds.append((accepts, pin))


def pin_foreign(sandbox: Any, engine: Any) -> None:
    """Pin ``engine``, another library's, to ``sandbox`` through the integration that registered its kind."""
    if not _kinds and type(engine).__module__.startswith("sqlalchemy"):
        importlib.import_module("pytest_txscope.sqlalchemy")  # registers SQLAlchemy engines on import
    for accepts, pin in _kinds:
        if accepts(engine):
            pin(sandbox, engine)
            return
    raise ConfigurationError(
        f"Sandbox(engines=[...]) got {engine!r}, which is neither a pytest_txscope Engine nor a SQLAlchemy "
        "Engine; pass the application's engines (Engine.from_url(...) or sqlalchemy.create_engine(...))"
    )
