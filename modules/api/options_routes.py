"""GET/POST /options (every Easel setting, plus the A1111 options clients use) and /cmd-flags.

POST switches the checkpoint (`sd_model_checkpoint`, a title, name or hash) and the VAE (`sd_vae`)
and saves the rest, all values checked before anything changes; unknown keys are ignored with a
log line, as A1111 does. An unknown checkpoint or VAE is 404 and leaves the model as it was.
"""

from __future__ import annotations

import logging
import math
from dataclasses import fields
from typing import Any, Optional

from fastapi import APIRouter, Body
from pydantic import ConfigDict, Field, create_model

from modules.api.a1111_options import COMPAT_OPTIONS, compat_defaults
from modules.api.errors import ApiInputError
from modules.config import Settings
from modules.errors import UserError
from modules.services import Services

log = logging.getLogger(__name__)

# A1111 command-line flags clients look at, with the value they have in Easel (no such feature: off).
_A1111_FLAGS: dict[str, Any] = {
    "medvram": False, "medvram_sdxl": False, "lowvram": False, "lowram": False, "xformers": False,
    "force_enable_xformers": False, "opt_sdp_attention": True, "no_half": False, "no_half_vae": False,
    "precision": "autocast", "upcast_sampling": False, "share": False, "ngrok": None, "theme": None,
    "enable_insecure_extension_access": False, "disable_safe_unpickle": False, "api_log": False,
    "api_server_stop": False, "skip_torch_cuda_test": False, "hide_ui_dir_config": False, "freeze_settings": False,
    "disable_extra_extensions": False, "disable_all_extensions": False, "gradio_queue": True, "ui_debug_mode": False,
}


def _options_model() -> type:
    """A pydantic model of every option, so /docs lists them with their descriptions."""
    definitions: dict[str, Any] = {}
    for spec in fields(Settings):
        definitions[spec.name] = (Optional[type(spec.default)], Field(spec.default, description=spec.metadata["description"]))
    definitions["sd_checkpoint_hash"] = (Optional[str], Field(None, description="sha256 of the active checkpoint (read only)."))
    for name, option in COMPAT_OPTIONS.items():
        definitions[name] = (Optional[type(option.default)], Field(option.default, description=f"A1111 option: {option.description}"))
    return create_model("Options", __config__=ConfigDict(extra="allow"), **definitions)


OptionsModel = _options_model()


def cmd_flags(services: Services) -> dict[str, Any]:
    """A1111's flag names with Easel's values; passwords are never shown, only whether one is set."""
    args = services.args
    return {
        **_A1111_FLAGS,
        "api": args.api, "nowebui": args.nowebui, "listen": args.listen, "port": args.port,
        "server_name": args.host, "ckpt": str(args.ckpt) if args.ckpt else None,
        "ckpt_dir": str(args.ckpt_dirs[0]) if args.ckpt_dirs else None, "vae_dir": str(args.vae_dirs[0]) if args.vae_dirs else None,
        "data_dir": str(args.data_dir), "models_dir": str(args.models_dir), "device_id": args.device,
        "api_auth": "(set)" if args.api_auth else None, "gradio_auth": "(set)" if args.gradio_auth else None,
        "skip_load": args.skip_load,
        "lora_dir": str(services.paths.models_dir / "Lora"), "embeddings_dir": str(services.paths.models_dir / "embeddings"),
        "hypernetwork_dir": str(services.paths.models_dir / "hypernetworks"),
    }


def add_options_routes(router: APIRouter, services: Services) -> None:
    @router.get("/options", response_model=OptionsModel)
    def get_options() -> dict[str, Any]:
        """Every setting: Easel's own, the active checkpoint's title and hash, and A1111's options Easel keeps."""
        values = services.config.values()
        if services.manager.loaded is None:  # starting up or unloaded: the one the next job loads (A1111 shows a title)
            values["sd_model_checkpoint"] = services.models.startup_title() or values.get("sd_model_checkpoint", "")
        values.update(compat_defaults(services.config.store.extra))
        return values

    @router.post("/options")
    def set_options(values: dict[str, Any] = Body(..., examples=[{"sd_model_checkpoint": "model.safetensors", "CLIP_stop_at_last_layers": 2}])) -> None:
        """Changes settings; `sd_model_checkpoint` / `sd_vae` switch the model. Answers null."""
        compat: dict[str, Any] = {}
        for key, value in values.items():
            if isinstance(value, float) and not math.isfinite(value):
                raise UserError(f"{key} must be a finite number, not {value}.")
            if key in COMPAT_OPTIONS:
                try:
                    compat[key] = COMPAT_OPTIONS[key].check(key, value)
                except ApiInputError as error:
                    raise UserError(str(error)) from error
        rest = {k: v for k, v in values.items() if k not in COMPAT_OPTIONS}
        ignored = services.config.apply(rest) if rest else []  # it waits for a running job (the model lock)
        services.config.save_extra(compat)
        if ignored:
            log.info("POST /options ignored unknown settings: %s", ", ".join(sorted(ignored)))
        return None

    @router.get("/cmd-flags")
    def get_cmd_flags() -> dict[str, Any]:
        """The command line, under A1111's flag names."""
        return cmd_flags(services)
