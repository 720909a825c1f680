"""Every error pytest-txscope raises on purpose.

All of them derive from `TxScopeError`, and each also derives from the built-in exception that fits
(``ValueError`` for bad configuration, ``ImportError`` for a missing driver, ``RuntimeError`` for misuse of a
transaction), so callers can catch either. Messages are built from fields and always end with what to do.
"""

from __future__ import annotations

from pytest_txscope.errors.base import (
    BackendUnavailableError,
    ConfigurationError,
    MalformedURLError,
    MissingDriverError,
    TransactionStateError,
    TxScopeError,
    UnknownDriverError,
    UnknownSchemeError,
)
from pytest_txscope.errors.connections import (
    ConnectionBusyError,
    ConnectionLostError,
    SandboxStillHeldError,
)
from pytest_txscope.errors.notices import (
    ConnectedBeforeSandboxWarning,
    SandboxIsolationWarning,
    TransactionLeftOpenWarning,
)
from pytest_txscope.errors.setup import (
    ImportPathError,
    ParameterError,
    RestoreError,
    ScriptError,
    UnsafeDatabaseError,
)
from pytest_txscope.errors.transactions import (
    AsyncContextError,
    DatabaseAccessError,
    EngineMismatchError,
    ImplicitCommitError,
    MissingEngineError,
    QueryCountError,
    SandboxEscapeError,
    SandboxRefusedError,
    SandboxThreadError,
    SyncWithError,
    UnpinnedEngineError,
    UnsupportedAsyncBackendError,
    UnsupportedConnectionError,
    WrongEventLoopError,
)

__all__ = [
    "AsyncContextError",
    "BackendUnavailableError",
    "ConfigurationError",
    "ConnectedBeforeSandboxWarning",
    "ConnectionBusyError",
    "ConnectionLostError",
    "DatabaseAccessError",
    "EngineMismatchError",
    "ImplicitCommitError",
    "ImportPathError",
    "MalformedURLError",
    "MissingDriverError",
    "MissingEngineError",
    "ParameterError",
    "QueryCountError",
    "RestoreError",
    "SandboxEscapeError",
    "SandboxIsolationWarning",
    "SandboxRefusedError",
    "SandboxStillHeldError",
    "SandboxThreadError",
    "ScriptError",
    "SyncWithError",
    "TransactionLeftOpenWarning",
    "TransactionStateError",
    "TxScopeError",
    "UnknownDriverError",
    "UnknownSchemeError",
    "UnpinnedEngineError",
    "UnsafeDatabaseError",
    "UnsupportedAsyncBackendError",
    "UnsupportedConnectionError",
    "WrongEventLoopError",
]

# Tracebacks, reprs and pickles name each class where users import it from (pytest_txscope.errors.X), not the
# submodule it is written in: the split into submodules is for the code's sake, not a change of public names.
for _name in __all__:
    globals()[_name].__module__ = __name__
del _name
