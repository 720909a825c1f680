"""Importing what an ini key names as ``package.module:attribute`` (``txscope_engines``, ``txscope_schema``), with
one error naming the key, the cause and the fix when the import fails."""

from __future__ import annotations

import importlib
import os
from typing import Any

from .errors import ImportPathError

__all__ = ["import_object"]


def import_object(key: str, path: str) -> Any:
    """Import ``package.module:attribute`` (the attribute may be dotted)."""
    module_name, _, attribute = path.partition(":")
    try:
        obj: Any = importlib.import_module(module_name)
    except Exception as exc:  # the module's own failure too (a missing environment variable, a typo in it)
        detail = exc.msg if isinstance(exc, SyntaxError) else exc  # _raised_at adds the file and line
        problem = f"cannot be imported: {type(exc).__name__}: {detail}"
        if isinstance(exc, ModuleNotFoundError) and f"{module_name}.".startswith(f"{exc.name}."):
            fix = "check the module's name, and that its folder is on sys.path (pytest's pythonpath ini key)"
        elif isinstance(exc, ModuleNotFoundError) and _in_driver_import(exc):
            problem += _raised_at(exc, in_packages=False)  # the application's line, not SQLAlchemy's
            fix = _missing_driver_fix(exc.name or "")
        else:
            problem += _raised_at(exc)
            fix = "fix that error in the module: it happens when the module is imported, before any test"
        raise ImportPathError(key, path, problem, fix) from exc
    for part in attribute.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise ImportPathError(
                key, path, f"cannot be imported: {obj!r} has no attribute {part!r}"
            ) from None
    return obj


def _in_driver_import(exc: BaseException) -> bool:
    """Whether ``exc`` was raised where SQLAlchemy imports the driver an engine's URL names."""
    tb = exc.__traceback__
    while tb is not None:
        if tb.tb_frame.f_code.co_name == "import_dbapi":
            return True
        tb = tb.tb_next
    return False


def _missing_driver_fix(module: str) -> str:
    """How to install the driver ``module`` an application's engine needs (SQLAlchemy imports it)."""
    from .dialects import DIALECTS, dialect_for_module

    dialect = dialect_for_module(module)
    if dialect is not None:
        return (
            "the application's engine names a driver that is not installed; install it with: "
            f"pip install 'pytest-txscope[{dialect.extra}]'"
        )
    known = ", ".join(f"{d.driver_display} ([{d.extra}])" for d in DIALECTS.values())
    return (
        f"the application's engine names a driver that is not installed ({module}), and that pytest-txscope "
        f"cannot pin engines on anyway; use one it can, installed with pip install 'pytest-txscope[<extra>]': "
        f"{known}"
    )


def _raised_at(exc: BaseException, *, in_packages: bool = True) -> str:
    """`` (raised at file:line)``: the innermost frame of the failure outside the standard library (and,
    unless ``in_packages``, outside installed packages)."""
    if isinstance(exc, SyntaxError) and exc.filename:
        return f" (raised at {exc.filename}:{exc.lineno})"
    stdlib, place = os.path.dirname(os.__file__), ""
    tb = exc.__traceback__
    while tb is not None:
        code = tb.tb_frame.f_code
        path = code.co_filename
        if not (
            path.startswith("<")
            or path == __file__
            or (path.startswith(stdlib) and "-packages" not in path)
            or (not in_packages and "-packages" in path)
        ):
            place = f" (raised at {path}:{tb.tb_lineno})"
        tb = tb.tb_next
    return place
