"""The ini keys the plugin reads, and the check that refuses a ``txscope_*`` key it does not read."""

from __future__ import annotations

import difflib
import re
import sys
from pathlib import Path

import pytest

__all__ = ["INI_KEYS", "check_unknown_keys"]

INI_KEYS = (
    "txscope_url",
    "txscope_schema",
    "txscope_engines",
    "txscope_reuse_db",
    "txscope_check_leaks",
    "txscope_block",
    "txscope_allow_databases",
    "txscope_statement_savepoints",
    "txscope_thread_timeout",
    "txscope_env",
    "txscope_threads",
    "txscope_connect",
    "txscope_databases",
    "txscope_database_schemas",
    "txscope_lock_timeout",
)
"""Every ini key the plugin reads; any other ``txscope_*`` key is a usage error naming the closest one."""


def check_unknown_keys(config: pytest.Config) -> None:
    """Refuse ``txscope_*`` keys the plugin does not read: a misspelt ``txscope_url`` would otherwise be a
    warning at the end of the run, and the tests would have run on the embedded SQLite default instead."""
    keys = [(key, _shown(config)) for key in _file_keys(config.inipath)] if config.inipath else []
    keys += [(item.partition("=")[0].strip(), "-o") for item in config.getoption("override_ini", None) or []]
    for key, where in keys:
        if key in INI_KEYS:
            continue
        folded = re.sub(r"[^a-z0-9]", "", key.lower())
        close = difflib.get_close_matches(key.lower().replace("-", "_"), INI_KEYS, n=1, cutoff=0.8)
        if not (folded.startswith("txscope") or close) or _registered(config, key):
            continue
        fix = f"did you mean {close[0]}?" if close else "remove it or use one of its keys"
        raise pytest.UsageError(
            f"unknown ini key {key!r} ({where}): pytest-txscope has no such setting; {fix} "
            f"(its keys: {', '.join(INI_KEYS)})"
        )


def _registered(config: pytest.Config, key: str) -> bool:
    """Whether another plugin registered ``key`` (pytest raises ValueError for keys nobody registered)."""
    try:
        config.getini(key)
    except ValueError:
        return False
    except Exception:  # registered, with a value its owner will complain about
        return True
    return True


def _shown(config: pytest.Config) -> str:
    assert config.inipath is not None
    try:
        return str(config.inipath.relative_to(config.rootpath))
    except ValueError:
        return str(config.inipath)


def _file_keys(path: Path) -> list[str]:
    """The keys of pytest's section in the config file pytest read (empty if it cannot be read again)."""
    try:
        if path.suffix == ".toml":
            if sys.version_info >= (3, 11):
                import tomllib
            else:  # pytest requires tomli on Python 3.10; it has no stubs to check against
                import tomli as tomllib  # type: ignore[import-not-found,unused-ignore]
            tool = tomllib.loads(path.read_text(encoding="utf-8")).get("tool", {}).get("pytest", {})
            # [tool.pytest.ini_options], or pytest 9's native [tool.pytest] table
            return [*tool.get("ini_options", {}), *(k for k in tool if k != "ini_options")]
        import iniconfig

        ini = iniconfig.IniConfig(str(path))
        section = "tool:pytest" if path.name == "setup.cfg" else "pytest"
        return list(ini[section]) if section in ini else []
    except Exception:  # pytest parsed it already; a second opinion is not worth failing the run over
        return []
