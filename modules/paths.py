"""Where Easel reads weights and writes its files, derived from --models-dir and --data-dir."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class AppPaths:
    """Where Easel reads weights and writes its files (see modules/cmd_args.py)."""

    models_dir: Path
    data_dir: Path

    @property
    def checkpoints_dir(self) -> Path:
        return self.models_dir / "Stable-diffusion"

    @property
    def vae_dir(self) -> Path:
        return self.models_dir / "VAE"

    @property
    def config_file(self) -> Path:
        return self.data_dir / "config.json"

    @property
    def hash_cache_file(self) -> Path:
        return self.data_dir / "cache.json"

    @property
    def tokenizer_cache(self) -> Path:
        return self.data_dir / "caches" / "tokenizers"

    @property
    def outputs_dir(self) -> Path:
        return self.data_dir / "outputs"

    @property
    def embeddings_dir(self) -> Path:
        return self.models_dir / "embeddings"

    @property
    def vae_approx_dir(self) -> Path:
        return self.models_dir / "VAE-approx"

    @property
    def styles_file(self) -> Path:
        return self.data_dir / "styles.csv"

    @property
    def preview_factors_file(self) -> Path:
        return self.data_dir / "caches" / "preview_factors.json"

    @property
    def database(self) -> Path:
        return self.data_dir / "history.sqlite3"

    @property
    def loras_dir(self) -> Path:
        return self.models_dir / "Lora"
