"""What a checkpoint merge is asked to do, checked before anything is read.

A1111's Checkpoint Merger (modules/extras.py `run_modelmerger`) has three methods, and Easel takes
them by the same names:

- "Weighted sum": A·(1 − M) + B·M (M = 0 gives A, M = 1 gives B, bit for bit);
- "Add difference": A + (B − C)·M (the usual "inpainting A + (custom B − base C)" recipe; C = B gives A);
- "No interpolation": A alone (to bake a VAE in or save at half precision).

Options: save at half precision (fp16), bake a VAE in (its weights replace the checkpoint's), leave
out the weights whose keys a regular expression finds ("discard weights", e.g. `model_ema` for
the EMA copy some files carry), and the
output's name (default as A1111 names it: `A_0.7-B_0.3-Weighted_sum-merged`). The
output is always `.safetensors`; a file of that name already there is refused, not overwritten.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from modules.errors import UserError

WEIGHTED_SUM = "Weighted sum"
ADD_DIFFERENCE = "Add difference"
NO_INTERPOLATION = "No interpolation"
METHODS = (WEIGHTED_SUM, ADD_DIFFERENCE, NO_INTERPOLATION)
_UNSAFE_NAME = re.compile(r"[\\/:*?\"<>|\x00-\x1f]")


class MergeError(UserError):
    """A merge that cannot run (bad settings, models that do not fit together)."""


@dataclass(frozen=True)
class MergeRecipe:
    primary: str  # A: a checkpoint name, title or hash (as the checkpoint list shows it)
    secondary: str = ""  # B
    tertiary: str = ""  # C (Add difference only)
    method: str = WEIGHTED_SUM
    multiplier: float = 0.3  # M (A1111's default)
    save_as_half: bool = False
    custom_name: str = ""
    bake_in_vae: str = ""  # a VAE name, or "" for none
    discard_weights: str = ""  # a regular expression: the keys it finds are left out of the result (A1111 1.10's option)

    def check(self) -> None:
        """MergeError naming the setting that cannot run."""
        if self.method not in METHODS:
            methods = ", ".join(METHODS)
            raise MergeError(f"Unknown merge method {self.method!r}; the methods are {methods}.")
        if not self.primary.strip():
            raise MergeError("Choose the primary model (A).")
        if self.method != NO_INTERPOLATION and not self.secondary.strip():
            raise MergeError(f"{self.method} needs a secondary model (B).")
        if self.method == ADD_DIFFERENCE and not self.tertiary.strip():
            raise MergeError("Add difference needs a tertiary model (C): the result is A + (B - C) x M.")
        if not (0.0 <= float(self.multiplier) <= 1.0) or self.multiplier != self.multiplier:
            raise MergeError(f"The multiplier M must be between 0 and 1, not {self.multiplier}.")
        if self.discard_weights.strip():
            try:
                re.compile(self.discard_weights)
            except re.error as error:
                pattern, reason = self.discard_weights, str(error)
                raise MergeError(f"Discard weights {pattern!r} is not a regular expression: {reason}.") from None
        if _UNSAFE_NAME.search(self.custom_name) or self.custom_name.strip() in (".", ".."):
            raise MergeError(f"The output name {self.custom_name!r} cannot be a file name (no / \\ : * ? \" < > |).")

    def output_stem(self, stems: list[str]) -> str:
        """The output file's name without extension: the custom name, or A1111's default."""
        if self.custom_name.strip():
            name = self.custom_name.strip()
            return name[: -len(".safetensors")] if name.lower().endswith(".safetensors") else name
        method = self.method.replace(" ", "_")
        if self.method == NO_INTERPOLATION:
            return f"{stems[0]}-{method}-merged"
        return f"{stems[0]}_{round(1 - self.multiplier, 2)}-{stems[1]}_{round(self.multiplier, 2)}-{method}-merged"

    def a1111_recipe(self, hashes: list[str | None]) -> dict[str, object]:
        """The `sd_merge_recipe` metadata A1111 writes (modules/extras.py), with this merge's values."""
        return {
            "type": "webui",
            "primary_model_hash": hashes[0],
            "secondary_model_hash": hashes[1] if len(hashes) > 1 else None,
            "tertiary_model_hash": hashes[2] if len(hashes) > 2 else None,
            "interp_method": self.method,
            "multiplier": self.multiplier,
            "save_as_half": self.save_as_half,
            "custom_name": self.custom_name,
            "config_source": 0,
            "bake_in_vae": self.bake_in_vae or "None",
            "discard_weights": self.discard_weights,
            "is_inpainting": False,
            "is_instruct_pix2pix": False,
        }
