"""What pictures from older A1111 versions say differently: the hypernetwork as `Hypernet` keys
instead of a prompt tag (before the 2023 extra-networks rework), and a refiner switched by
sampling steps (before 1.8.0)."""

from __future__ import annotations

import re
from typing import Mapping

LEGACY_HYPERNET_KEYS = frozenset({"Hypernet", "Hypernet strength", "Hypernet hash"})  # old pictures: the tag goes into the prompt


def before_a1111_1_8(version: str) -> bool:
    """Whether a `Version` key names an A1111 older than 1.8.0 (Forge's `f2.0.1v1.10.1-...` reads
    as the A1111 it is based on; no version: not known to be older)."""
    found = re.search(r"v(\d+)\.(\d+)", version)
    return found is not None and (int(found.group(1)), int(found.group(2))) < (1, 8)


def legacy_hypernet_tag(params: Mapping[str, str]) -> str | None:
    """`<hypernet:name:strength>` from a picture made before A1111's 2023 extra-networks rework
    (`Hypernet`, `Hypernet strength`; strength 1.0 when not written, as A1111's paste reads it)."""
    name = (params.get("Hypernet") or "").strip()
    if not name or name == "None":
        return None
    strength = (params.get("Hypernet strength") or "").strip() or "1.0"
    return f"<hypernet:{name}:{strength}>"
