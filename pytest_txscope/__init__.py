"""pytest-txscope: unit-of-work transactions over DB-API connections, and a pytest plugin built on them.

The core (this package without `plugin`) never imports pytest.
"""

from __future__ import annotations

from .core import (
    Engine,
    Session,
    Transaction,
    TransactionBlock,
    TransactionKind,
    TransactionState,
    current_session,
    ensure_transaction,
    transaction,
)
from .dbapi import SandboxConnection
from .errors import (
    BackendUnavailableError,
    ConfigurationError,
    ConnectedBeforeSandboxWarning,
    ConnectionBusyError,
    ConnectionLostError,
    DatabaseAccessError,
    ImplicitCommitError,
    ImportPathError,
    MalformedURLError,
    MissingDriverError,
    MissingEngineError,
    ParameterError,
    RestoreError,
    SandboxEscapeError,
    SandboxRefusedError,
    SandboxStillHeldError,
    SandboxThreadError,
    ScriptError,
    TransactionLeftOpenWarning,
    TransactionStateError,
    TxScopeError,
    UnknownDriverError,
    UnknownSchemeError,
    UnsafeDatabaseError,
    UnsupportedConnectionError,
)
from .sandbox import Sandbox
from .url import DatabaseURL

__all__ = [
    "BackendUnavailableError",
    "ConfigurationError",
    "ConnectedBeforeSandboxWarning",
    "ConnectionBusyError",
    "ConnectionLostError",
    "DatabaseAccessError",
    "DatabaseURL",
    "Engine",
    "ImplicitCommitError",
    "ImportPathError",
    "MalformedURLError",
    "MissingDriverError",
    "MissingEngineError",
    "ParameterError",
    "RestoreError",
    "Sandbox",
    "SandboxConnection",
    "SandboxEscapeError",
    "SandboxRefusedError",
    "SandboxStillHeldError",
    "SandboxThreadError",
    "ScriptError",
    "Session",
    "Transaction",
    "TransactionBlock",
    "TransactionKind",
    "TransactionLeftOpenWarning",
    "TransactionState",
    "TransactionStateError",
    "TxScopeError",
    "UnknownDriverError",
    "UnknownSchemeError",
    "UnsafeDatabaseError",
    "UnsupportedConnectionError",
    "current_session",
    "ensure_transaction",
    "transaction",
]
__version__ = "0.1.0"
