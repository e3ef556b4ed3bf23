"""k-diffusion as a test-only reference (never imported by Easel itself).

k-diffusion is installed without its dependencies (``pip install --no-deps -r
requirements-test-nodeps.txt``): a normal install would pull a CUDA torch, torchvision, wandb and
more. Its package ``__init__`` imports the training code, which needs those, so this helper
registers a bare ``k_diffusion`` package (pointing at the installed folder) and imports only
``k_diffusion.sampling`` and ``k_diffusion.external``. Their ``utils`` import needs
``torchvision.transforms.functional`` for image helpers the samplers never call; a stand-in module
is put in ``sys.modules`` for the duration of that import only, and removed again so nothing else
sees a fake torchvision.

Tests call :func:`load` and are skipped (with the install command in the reason) when the
reference is not installed.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import sys
import types
from types import ModuleType

import pytest

INSTALL_HINT = "k-diffusion reference not installed: .venv/bin/pip install --no-deps -r requirements-test-nodeps.txt"
_STUBBED = ("torchvision", "torchvision.transforms", "torchvision.transforms.functional")


def _import_with_torchvision_stub(names: tuple[str, ...]) -> list[ModuleType]:
    if importlib.util.find_spec("torchvision") is not None:
        return [importlib.import_module(name) for name in names]
    stubs = {name: types.ModuleType(name) for name in _STUBBED}
    stubs["torchvision"].transforms = stubs["torchvision.transforms"]  # type: ignore[attr-defined]
    stubs["torchvision.transforms"].functional = stubs["torchvision.transforms.functional"]  # type: ignore[attr-defined]
    sys.modules.update(stubs)
    try:
        return [importlib.import_module(name) for name in names]
    finally:
        for name, stub in stubs.items():
            if sys.modules.get(name) is stub:
                del sys.modules[name]


def _unavailable(reason: str) -> None:
    """Skip on a developer's machine without the reference; fail in CI, where ./test.sh installs
    it, so the parity tests can never pass by not running."""
    if os.environ.get("CI"):
        pytest.fail(reason)
    pytest.skip(reason)


def load() -> tuple[ModuleType, ModuleType]:
    """(k_diffusion.sampling, k_diffusion.external); skips the calling test when unavailable."""
    loaded = sys.modules.get("k_diffusion.sampling"), sys.modules.get("k_diffusion.external")
    if all(loaded):
        return loaded  # type: ignore[return-value]
    for dependency in ("torchsde", "torchdiffeq", "scipy", "tqdm"):
        if importlib.util.find_spec(dependency) is None:
            _unavailable(f"{INSTALL_HINT} (missing {dependency})")
    if "k_diffusion" not in sys.modules:
        spec = importlib.util.find_spec("k_diffusion")
        if spec is None or not spec.submodule_search_locations:
            _unavailable(INSTALL_HINT)
        package = types.ModuleType("k_diffusion")
        package.__path__ = list(spec.submodule_search_locations)
        package.__spec__ = spec
        package.__file__ = spec.origin
        sys.modules["k_diffusion"] = package
    sampling, external = _import_with_torchvision_stub(("k_diffusion.sampling", "k_diffusion.external"))
    return sampling, external
