"""Importing spandrel (the model-file reader for upscalers) with or without torchvision.

spandrel imports `torchvision.transforms.functional` at import time, for LaMa and RestoreFormer only.
With a CUDA/ROCm torch, scripts/setup_env.sh installs the matching torchvision and it is used. With
a CPU torch there is no torchvision that imports (PyPI's Linux wheels are CUDA builds), so while
spandrel is imported, and only then, the name `torchvision.transforms.functional` resolves to
`torchvision_stand_in` (the three names spandrel takes from it). The names are removed from
`sys.modules` right after, so libraries that look for torchvision (diffusers, transformers) still
find none, as before.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
import threading
import types
from typing import Any

_lock = threading.Lock()
_STAND_IN_NAMES = ("torchvision", "torchvision.transforms", "torchvision.transforms.functional")


def _torchvision_imports() -> bool:
    if importlib.util.find_spec("torchvision") is None:
        return False
    try:
        importlib.import_module("torchvision.transforms.functional")
    except (ImportError, RuntimeError):  # a CUDA torchvision beside a CPU torch: "operator torchvision::nms does not exist"
        return False
    return True


def import_spandrel() -> Any:
    """The spandrel module (imported once; later calls return it at once)."""
    loaded = sys.modules.get("spandrel")
    if loaded is not None:
        return loaded
    with _lock:
        if "spandrel" in sys.modules:
            return sys.modules["spandrel"]
        if _torchvision_imports():
            return importlib.import_module("spandrel")
        from modules.upscalers import torchvision_stand_in

        package = types.ModuleType("torchvision")
        transforms = types.ModuleType("torchvision.transforms")
        package.transforms = transforms  # type: ignore[attr-defined]
        transforms.functional = torchvision_stand_in  # type: ignore[attr-defined]
        lent = dict(zip(_STAND_IN_NAMES, (package, transforms, torchvision_stand_in)))
        for name, module in lent.items():
            sys.modules.setdefault(name, module)
        try:
            return importlib.import_module("spandrel")
        finally:
            for name, module in lent.items():
                if sys.modules.get(name) is module:
                    del sys.modules[name]
