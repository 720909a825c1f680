"""The core API (engines, sessions, transactions, the sandbox) on every backend, and state machines checking it."""
