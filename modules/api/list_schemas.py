"""Pydantic models of the listing and utility routes (A1111 1.10.1 `modules/api/models.py` shapes)."""

from __future__ import annotations

from typing import Any, Optional

from pydantic import BaseModel, Field

from modules.api.schemas import ApiModel


class SamplerItem(BaseModel):
    name: str
    aliases: list[str]
    options: dict[str, str]


class SchedulerItem(BaseModel):
    name: str
    label: str
    aliases: Optional[list[str]] = None
    default_rho: Optional[float] = None
    need_inner_model: Optional[bool] = None


class UpscalerItem(BaseModel):
    name: str
    model_name: Optional[str] = None
    model_path: Optional[str] = None
    model_url: Optional[str] = None
    scale: Optional[float] = None


class LatentUpscalerModeItem(BaseModel):
    name: str


class SDModelItem(BaseModel):
    title: str
    model_name: str
    hash: Optional[str] = None
    sha256: Optional[str] = None
    filename: str
    config: Optional[str] = None


class SDVaeItem(BaseModel):
    model_name: str
    filename: str


class PromptStyleItem(BaseModel):
    name: str
    prompt: Optional[str] = None
    negative_prompt: Optional[str] = None


class EmbeddingItem(BaseModel):
    step: Optional[int] = None
    sd_checkpoint: Optional[str] = None
    sd_checkpoint_name: Optional[str] = None
    shape: int = Field(description="Vector width (768 SD1, 1024 SD2, 768/1280 SDXL); 0 for a file that cannot be read.")
    vectors: int = Field(description="Token positions it takes in a prompt.")


class EmbeddingsResponse(BaseModel):
    loaded: dict[str, EmbeddingItem] = Field(description="Textual-inversion embeddings the loaded model can use (trigger: the name).")
    skipped: dict[str, EmbeddingItem] = Field(description="Ones it cannot: made for another model family, or unreadable.")


class ScriptsList(BaseModel):
    txt2img: list[str]
    img2img: list[str]


class ExtensionItem(BaseModel):
    """A1111's /extensions entry; Easel's extensions are folders, not git clones: no remote/commit."""

    name: str
    remote: str = ""
    branch: str = ""
    commit_hash: str = ""
    version: str = ""
    commit_date: int = 0
    enabled: bool


class ScriptArg(BaseModel):
    label: Optional[str] = None
    value: Optional[Any] = None
    minimum: Optional[Any] = None
    maximum: Optional[Any] = None
    step: Optional[Any] = None
    choices: Optional[list[str]] = None


class ScriptInfo(BaseModel):
    name: Optional[str] = None
    is_alwayson: Optional[bool] = None
    is_img2img: Optional[bool] = None
    args: list[ScriptArg]


class MemoryResponse(BaseModel):
    ram: dict[str, Any] = Field(description="free, used, total (bytes).")
    cuda: dict[str, Any] = Field(description="system, active, allocated, reserved, inactive, events; or {error}.")


class ExtrasFields(ApiModel):
    """What both extras routes take (A1111's ExtrasBaseRequest)."""

    resize_mode: Optional[int] = Field(0, description="0: scale by upscaling_resize; 1: to upscaling_resize_w x _h.")
    show_extras_results: Optional[bool] = True
    gfpgan_visibility: Optional[float] = Field(0, description="0: Easel has no face restorers yet (more is a 422).")
    codeformer_visibility: Optional[float] = 0
    codeformer_weight: Optional[float] = 0
    upscaling_resize: Optional[float] = Field(2, description="Scale factor, 1-8.")
    upscaling_resize_w: Optional[int] = 512
    upscaling_resize_h: Optional[int] = 512
    upscaling_crop: Optional[bool] = True
    upscaler_1: Optional[str] = Field("None", description="A name from /upscalers.")
    upscaler_2: Optional[str] = "None"
    extras_upscaler_2_visibility: Optional[float] = 0
    upscale_first: Optional[bool] = False


class ExtrasSingleImageRequest(ExtrasFields):
    image: str = Field("", description="Base64 image (bare or data: URI).")


class FileData(ApiModel):
    data: str = Field(description="Base64 image.")
    name: str = ""


class ExtrasBatchImagesRequest(ExtrasFields):
    imageList: list[FileData] = Field(default_factory=list)  # noqa: N815 (A1111's name)


class ExtrasSingleImageResponse(BaseModel):
    html_info: str
    image: str


class ExtrasBatchImagesResponse(BaseModel):
    html_info: str
    images: list[str]
