"""The CPU dtypes Easel runs in, for tests whose numbers depend on the dtype.

Easel runs bfloat16 on CPUs with AMX and float32 on the others (modules/device/hardware.py). A test that
compares numbers never depends on that choice: it names its dtype (`--dtype`, or the ModelManager
argument), and the dtype-sensitive paths (engine parity, embeddings, model switching, LoRA restore,
previews) run under both through the `dtype_name` fixture (tests/conftest.py), whatever CPU the suite
is on. Tolerances that differ by dtype are stated here, once.
"""

from __future__ import annotations

import torch

CPU_DTYPES: dict[str, torch.dtype] = {"fp32": torch.float32, "bf16": torch.bfloat16}

# A tiny random VAE's decode in bf16 against the same decode in float32, in 8-bit pixel levels
# (measured on tests/unit/test_previews.py's VAE over 3 seeds: max 10-11, mean 1.05-1.14).
VAE_DECODE_LEVELS = {torch.float32: (0, 0.0), torch.bfloat16: (16, 2.0)}  # (max, mean)
