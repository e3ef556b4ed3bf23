"""A short run of tools/fuzz_metadata.py in the suite: mutated PNG/JPEG/WebP files through the
metadata reader give a result or our clear UserError, never another exception or a hang.
(The 10,000-case run is `tools/fuzz_metadata.py`, outside the suite.)"""

from __future__ import annotations

import pytest

from tools.fuzz_metadata import fuzz, mutate, seed_files


def test_seed_files_are_valid_and_mutations_change_them():
    import io
    import random

    from modules.infotext.foreign import read_image_parameters

    files = seed_files()
    assert read_image_parameters(io.BytesIO(files[0])).params["Seed"] == "1170634956"
    rng = random.Random(1)
    assert sum(mutate(files[0], rng) != files[0] for _ in range(50)) >= 45


@pytest.mark.filterwarnings("ignore::UserWarning")  # PIL warns about the corrupt Exif it reads safely
def test_mutated_files_never_crash_the_reader():
    assert fuzz(cases=400, seed=12345, max_seconds=2.0) == []
