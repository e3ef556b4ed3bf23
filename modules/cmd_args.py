"""Command-line flags (A1111's names), parsed into a typed `Args`.

Only the standard library is imported here, so a typo in a flag is reported at once, before torch or
gradio take seconds to import. Where things live:

- `--models-dir` (default `<repo>/models`): `Stable-diffusion/` and `VAE/` are scanned for weights;
  `--ckpt-dir` / `--vae-dir` add folders, `--ckpt` adds one file. When none of them holds a
  checkpoint, the demo model shipped in `<repo>/models/Stable-diffusion` is listed and loaded
  instead (`--no-demo-model` turns that off).
- `--data-dir` (default `<repo>/data`): everything Easel writes — `config.json` (settings),
  `cache.json` (model hashes), `caches/` (the built CLIP tokenizer), `outputs/` (images) and the
  history database. Point it elsewhere to keep several independent set-ups, or for tests.
"""

from __future__ import annotations

import argparse
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path

from modules.upscalers.catalog import FOLDERS as UPSCALER_FLAGS  # (folder, its flag); a light module

REPO_ROOT = Path(__file__).resolve().parents[1]
# The small demo model that ships with Easel (tools/train_demo_model.py): listed and loaded when no
# other checkpoint is found, so a fresh install draws something before any download.
DEMO_CHECKPOINT = REPO_ROOT / "models" / "Stable-diffusion" / "easel-demo-shapes.safetensors"
DEFAULT_PORT = 7860
DEFAULT_API_ONLY_PORT = 7861  # A1111's default when there is no web UI (--nowebui)
LOOPBACK = "127.0.0.1"
ALL_INTERFACES = "0.0.0.0"

Credentials = list[tuple[str, str]]


@dataclass
class Args:
    """The parsed command line; paths are absolute."""

    host: str = LOOPBACK
    port: int = DEFAULT_PORT
    listen: bool = False
    api: bool = False
    nowebui: bool = False
    ckpt: Path | None = None
    ckpt_dirs: list[Path] = field(default_factory=list)
    vae_dirs: list[Path] = field(default_factory=list)
    data_dir: Path = REPO_ROOT / "data"
    models_dir: Path = REPO_ROOT / "models"
    gradio_auth: Credentials = field(default_factory=list)
    api_auth: Credentials = field(default_factory=list)
    max_upload_mb: float = 50.0  # largest request body (API JSON, page uploads), in MB
    device: str | None = None  # None: the `device` setting decides
    dtype: str | None = None  # None: the `dtype` setting decides
    threads: int | None = None  # CPU threads; None: one per physical core (modules/device/hardware.py)
    fast_mode: bool = False  # torch.compile the UNet
    memory: str = "auto"  # memory plan: auto, full, low or offload
    skip_load: bool = False
    backend: str = "inprocess"  # "ray": generation on Ray Serve replicas (modules/backends, docs/scale-out.md)
    ray_address: str | None = None  # None: start a local Ray instance
    ray_replicas: int = 0  # 0: one per GPU of the Ray cluster (at least 1)
    ray_models_per_replica: int = 2
    demo_checkpoint: Path | None = DEMO_CHECKPOINT  # None: --no-demo-model
    extensions_dir: Path = REPO_ROOT / "extensions"
    disable_extensions: bool = False
    localizations_dir: Path = REPO_ROOT / "localizations"  # A1111-style <language>.json files
    language: str | None = None  # None: the `language` setting decides ("auto": the browser's)
    controlnet_dirs: list[Path] = field(default_factory=list)  # --controlnet-dir: more ControlNet folders
    ad_extra_models_dirs: list[Path] = field(default_factory=list)  # --ad-extra-models-dir: more detector folders
    upscaler_dirs: dict[str, Path] = field(default_factory=dict)  # "ESRGAN" -> --esrgan-models-path...; unset: <models-dir>/<name>

    def upscaler_folders(self) -> dict[str, Path]:
        """Where each of A1111's upscaler folders is read from (modules/upscalers/catalog.py)."""
        return {name: self.upscaler_dirs.get(name, self.models_dir / name) for name, _ in UPSCALER_FLAGS}

    @property
    def webui(self) -> bool:
        return not self.nowebui

    def open_surfaces(self) -> list[str]:
        """What anyone who can reach the port may use without a password (for the --listen warning)."""
        surfaces = []
        if self.webui and not self.gradio_auth:
            surfaces.append("the web UI (add --gradio-auth user:password)")
        if self.api and not self.api_auth:
            surfaces.append("the HTTP API (add --api-auth user:password)")
        return surfaces


def _port(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{text}' is not a port number (1-65535)") from None
    if not 1 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"{value} is out of range (1-65535)")
    return value


def _credentials(text: str) -> Credentials:
    pairs = []
    for item in text.split(","):
        user, colon, password = item.strip().partition(":")
        if not colon or not user or not password:
            # the text is not echoed: it may be a password typed without its user name
            raise argparse.ArgumentTypeError("expected user:password (several: user1:pass1,user2:pass2)")
        pairs.append((user, password))
    return pairs


def _megabytes(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{text}' is not a number of megabytes") from None
    if not 0.1 <= value <= 100_000:
        raise argparse.ArgumentTypeError(f"{value:g} MB is out of range (0.1-100000)")
    return value


def _existing_file(text: str) -> Path:
    path = Path(text).expanduser().resolve()
    if not path.is_file():
        raise argparse.ArgumentTypeError(f"no such file: {text}")
    return path


def _existing_dir(text: str) -> Path:
    path = Path(text).expanduser().resolve()
    if not path.is_dir():
        raise argparse.ArgumentTypeError(f"no such folder: {text}")
    return path


def _folder(text: str) -> Path:
    path = Path(text).expanduser().resolve()
    if path.exists() and not path.is_dir():
        raise argparse.ArgumentTypeError(f"{text} exists and is not a folder")
    return path


def _device(text: str) -> str:
    if not re.fullmatch(r"auto|cpu|mps|cuda(:\d+)?", text):
        raise argparse.ArgumentTypeError(f"'{text}' is not a device: use auto, cpu, cuda, cuda:N or mps")
    return text


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # one line, not argparse's usage block; still exit code 2
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="webui.py",
        description="Easel: a Stable Diffusion web UI and A1111-compatible HTTP API.",
        epilog="Easel writes settings, hashes, caches and images under --data-dir; it reads weights from --models-dir.",
    )
    net = parser.add_argument_group("network")
    net.add_argument("--port", type=_port, default=None, help=f"port to serve on (default {DEFAULT_PORT}; {DEFAULT_API_ONLY_PORT} with --nowebui)")
    net.add_argument("--listen", action="store_true", help="serve on all network interfaces (0.0.0.0) instead of this machine only (127.0.0.1)")
    net.add_argument("--server-name", metavar="HOST", default=None, help="exact address to bind (overrides --listen)")
    net.add_argument("--api", action="store_true", help="serve the A1111-compatible HTTP API under /sdapi/v1")
    net.add_argument("--nowebui", action="store_true", help="serve only the API, no web UI (implies --api)")
    net.add_argument("--gradio-auth", type=_credentials, metavar="USER:PASS[,USER:PASS]", default=[], help="password-protect the web UI")
    net.add_argument("--api-auth", type=_credentials, metavar="USER:PASS[,USER:PASS]", default=[], help="password-protect the API (HTTP Basic)")
    net.add_argument("--max-upload-mb", type=_megabytes, metavar="MB", default=50.0, help="largest request accepted, in MB: API bodies and page uploads (default 50); larger ones get 413")
    models = parser.add_argument_group("models and files")
    models.add_argument("--ckpt", type=_existing_file, metavar="PATH", default=None, help="checkpoint file to load at start (listed with the others)")
    models.add_argument("--ckpt-dir", type=_existing_dir, metavar="DIR", action="append", default=[], help="another folder of checkpoints (repeatable)")
    models.add_argument("--vae-dir", type=_existing_dir, metavar="DIR", action="append", default=[], help="another folder of VAEs (repeatable)")
    models.add_argument("--models-dir", type=_folder, metavar="DIR", default=REPO_ROOT / "models", help="folder with Stable-diffusion/ and VAE/ (default: models/ in the Easel folder)")
    models.add_argument("--data-dir", type=_folder, metavar="DIR", default=REPO_ROOT / "data", help="where config.json, cache.json, caches/ and outputs/ are written (default: data/ in the Easel folder)")
    models.add_argument("--extensions-dir", type=_folder, metavar="DIR", default=REPO_ROOT / "extensions", help="folder of extensions (default: extensions/ in the Easel folder)")
    models.add_argument("--localizations-dir", type=_folder, metavar="DIR", default=REPO_ROOT / "localizations", help="folder of A1111-style localization files (<language>.json; default: localizations/ in the Easel folder)")
    models.add_argument("--language", default=None, metavar="LANG", help="language of the page: auto (the browser's, the default), en, zh-CN, or a file's language in --localizations-dir (default: the 'language' setting)")
    models.add_argument("--controlnet-dir", type=_existing_dir, metavar="DIR", action="append", default=[], help="another folder of ControlNet models (repeatable; models/ControlNet is always read)")
    models.add_argument("--ad-extra-models-dir", type=_existing_dir, metavar="DIR", action="append", default=[], help="another folder of ADetailer detectors (repeatable; models/adetailer is always read)")
    for name, flag in UPSCALER_FLAGS:
        models.add_argument(flag, type=_folder, metavar="DIR", default=None, help=f"folder of {name} upscaler models (default: models/{name})")
    models.add_argument("--disable-extensions", action="store_true", help="start without loading any extension (to rule one out)")
    models.add_argument("--skip-load", action="store_true", help="start without loading a checkpoint")
    models.add_argument("--no-demo-model", action="store_true", help="when no checkpoint is found, do not fall back to Easel's bundled demo model (models/Stable-diffusion/easel-demo-shapes.safetensors)")
    compute = parser.add_argument_group("compute")
    compute.add_argument("--device", type=_device, default=None, help="auto, cpu, cuda, cuda:N or mps (default: the 'device' setting, auto)")
    compute.add_argument("--dtype", choices=("auto", "fp32", "fp16", "bf16"), default=None, help="weights dtype (default: the 'dtype' setting, auto)")
    compute.add_argument("--threads", type=int, metavar="N", default=None, help="CPU threads for torch (default: one per physical core)")
    compute.add_argument("--fast-mode", action="store_true", help="compile the UNet with torch.compile (the first job at each size waits for it)")
    compute.add_argument("--memory", choices=("auto", "full", "low", "offload"), default="auto", help="memory plan: low = attention slicing + tiled VAE; offload = low + model CPU offload (weights in RAM, one component on the GPU at a time); default: chosen from free GPU memory")
    scale = parser.add_argument_group("scale-out (docs/scale-out.md)")
    scale.add_argument("--backend", choices=("inprocess", "ray"), default="inprocess", help="where generation runs: in this process, or on Ray Serve replicas (pip install -r requirements-ray.txt)")
    scale.add_argument("--ray-address", metavar="ADDR", default=None, help="Ray cluster to join: auto, on a node where `ray start` ran (default: start a local Ray instance on 127.0.0.1)")
    scale.add_argument("--ray-replicas", type=int, metavar="N", default=0, help="generation replicas (default: one per GPU of the cluster)")
    scale.add_argument("--ray-models-per-replica", type=int, metavar="N", default=2, help="checkpoints each replica keeps loaded (LRU; default 2)")
    return parser


def parse_args(argv: list[str] | None = None) -> Args:
    """Parses `argv` (default: sys.argv[1:]); bad values print one line and exit with code 2."""
    ns = build_parser().parse_args(sys.argv[1:] if argv is None else argv)
    api = ns.api or ns.nowebui
    host = ns.server_name or (ALL_INTERFACES if ns.listen else LOOPBACK)
    port = ns.port or (DEFAULT_API_ONLY_PORT if ns.nowebui else DEFAULT_PORT)
    return Args(
        host=host,
        port=port,
        listen=ns.listen,
        api=api,
        nowebui=ns.nowebui,
        ckpt=ns.ckpt,
        ckpt_dirs=ns.ckpt_dir,
        vae_dirs=ns.vae_dir,
        data_dir=ns.data_dir,
        models_dir=ns.models_dir,
        gradio_auth=ns.gradio_auth,
        api_auth=ns.api_auth,
        max_upload_mb=ns.max_upload_mb,
        device=ns.device,
        dtype=ns.dtype,
        threads=ns.threads,
        fast_mode=ns.fast_mode,
        memory=ns.memory,
        skip_load=ns.skip_load,
        backend=ns.backend,
        ray_address=ns.ray_address,
        ray_replicas=ns.ray_replicas,
        ray_models_per_replica=ns.ray_models_per_replica,
        demo_checkpoint=None if ns.no_demo_model else DEMO_CHECKPOINT,
        extensions_dir=ns.extensions_dir,
        disable_extensions=ns.disable_extensions,
        localizations_dir=ns.localizations_dir,
        language=ns.language,
        controlnet_dirs=ns.controlnet_dir,
        ad_extra_models_dirs=ns.ad_extra_models_dir,
        upscaler_dirs={name: getattr(ns, flag.removeprefix("--").replace("-", "_")) for name, flag in UPSCALER_FLAGS
                       if getattr(ns, flag.removeprefix("--").replace("-", "_")) is not None},
    )
