"""Loading an exercise's trusted spec module (`spec = "tests/spec.py"` in the manifest) on the host."""
from __future__ import annotations

import hashlib
import importlib.util
import sys
from pathlib import Path
from types import ModuleType

from ..errors import BadInput

_loaded: dict[str, ModuleType] = {}


def load_spec(path: Path) -> ModuleType:
    """Import the spec file once per content; BadInput when it is missing or broken."""
    if not path.is_file():
        raise BadInput(f"{path}: spec module not found")
    key = hashlib.sha256(path.read_bytes()).hexdigest()
    if key not in _loaded:
        name = f"mlgrade_spec_{key[:12]}"
        module_spec = importlib.util.spec_from_file_location(name, path)
        module = importlib.util.module_from_spec(module_spec)
        sys.modules[name] = module  # dataclasses need their module registered
        try:
            module_spec.loader.exec_module(module)
        except Exception as exc:
            sys.modules.pop(name, None)
            raise BadInput(f"{path}: spec module fails to import: {type(exc).__name__}: {exc}") from None
        _loaded[key] = module
    return _loaded[key]
