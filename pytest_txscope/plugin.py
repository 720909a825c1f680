"""The pytest plugin (``-p txscope``). Fixtures, marker and options arrive with the sandbox; this module is
import-light on purpose: loading it must never slow down or break an unrelated pytest run."""

from __future__ import annotations

__all__: list[str] = []
