"""LoRA networks: find the files (files.py), read kohya/A1111 state dicts into per-parameter deltas
for our loaded modules (format.py), and patch a loaded model's weights in place, exactly reversibly
(patch.py). Importing this package does nothing."""
