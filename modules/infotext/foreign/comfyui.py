"""ComfyUI: the `prompt` API graph, followed from the first-pass KSampler to its texts, seed and size."""

from __future__ import annotations

from typing import Any

from modules.infotext.foreign.common import (
    COMFY_SAMPLERS,
    COMFY_SCHEDULERS,
    IMAGE_SIZE_KEY,
    ImageParameters,
    _file_stem,
    _json_object,
    _number,
    _put,
    _put_sampler,
    _put_size,
    _result,
)

_COMFY_SAMPLER_NODES = ("KSampler", "KSamplerAdvanced")
_MAX_HOPS = 32  # a link chain longer than this (or a cycle) is given up on
_TEXT_INPUTS = ("text", "text_g", "text_l")  # CLIPTextEncode; CLIPTextEncodeSDXL


class _ComfyGraph:
    """ComfyUI's API graph: ``{id: {class_type, inputs}}``; an input is a literal or a link
    ``[source id, output index]``. Lookups answer None for anything missing or malformed."""

    def __init__(self, nodes: dict[str, Any]) -> None:
        self.nodes = {str(k): v for k, v in nodes.items() if isinstance(v, dict) and isinstance(v.get("class_type"), str)}

    @staticmethod
    def is_link(value: Any) -> bool:
        return isinstance(value, list) and len(value) == 2 and isinstance(value[0], (str, int)) and isinstance(value[1], int)

    def inputs(self, node_id: str) -> dict[str, Any]:
        inputs = self.nodes.get(node_id, {}).get("inputs")
        return inputs if isinstance(inputs, dict) else {}

    def class_type(self, node_id: str) -> str:
        return str(self.nodes.get(node_id, {}).get("class_type", ""))

    def _pass_through(self, node_id: str) -> Any:
        """The single linked input of a reroute-like node, else None."""
        links = [v for v in self.inputs(node_id).values() if self.is_link(v)]
        return links[0] if len(links) == 1 and len(self.inputs(node_id)) == 1 else None

    def value(self, value: Any, names: tuple[str, ...], hops: int = 0) -> Any:
        """A literal input, following links through primitive and reroute nodes (their input
        named like the one asked for, or ``value``)."""
        if not self.is_link(value):
            return value
        if hops > _MAX_HOPS:
            return None
        node_id, inputs = str(value[0]), self.inputs(str(value[0]))
        for name in (*names, "value"):
            if name in inputs:
                return self.value(inputs[name], names, hops + 1)
        return self.value(self._pass_through(node_id), names, hops + 1)

    def encoder(self, value: Any, hops: int = 0) -> dict[str, Any] | None:
        """The inputs of the text encoder (CLIPTextEncode and relatives) behind a conditioning
        link, reached through ControlNet/area/combine nodes that pass conditioning on."""
        if not self.is_link(value) or hops > _MAX_HOPS:
            return None
        node_id, inputs = str(value[0]), self.inputs(str(value[0]))
        if any(name in inputs for name in _TEXT_INPUTS):
            return inputs
        onward: list[str] = ["conditioning", "conditioning_1", "conditioning_to"]
        if "positive" in inputs and "negative" in inputs:  # ControlNetApplyAdvanced: output 0 / 1
            onward.insert(0, "negative" if value[1] == 1 else "positive")
        for name in onward:
            if name in inputs:
                return self.encoder(inputs[name], hops + 1)
        return self.encoder(self._pass_through(node_id), hops + 1)

    def text(self, value: Any) -> str | None:
        """The prompt text behind a conditioning link."""
        inputs = self.encoder(value) or {}
        name = next((name for name in _TEXT_INPUTS if name in inputs), None)
        found = self.value(inputs[name], ("text", "string")) if name else None
        return found if isinstance(found, str) else None

    def find_upstream(self, value: Any, via: str, wanted: tuple[str, ...], hops: int = 0) -> tuple[str, dict[str, Any]] | None:
        """The first node up the ``via`` input chain (model, clip, vae) with one of ``wanted``."""
        if not self.is_link(value) or hops > _MAX_HOPS:
            return None
        node_id = str(value[0])
        inputs = self.inputs(node_id)
        if any(name in inputs for name in wanted):
            return node_id, inputs
        return self.find_upstream(inputs.get(via, self._pass_through(node_id)), via, wanted, hops + 1)

    def latent_size(self, value: Any, through_samplers: bool = True, hops: int = 0) -> tuple[Any, Any] | None:
        """(width, height) of the empty latent a sampler starts from, also through the samplers
        before it (a refiner's base pass) unless ``through_samplers`` is False."""
        if not self.is_link(value) or hops > _MAX_HOPS:
            return None
        node_id, inputs = str(value[0]), self.inputs(str(value[0]))
        if "width" in inputs and "height" in inputs and "samples" not in inputs:
            return self.value(inputs["width"], ("width", "int")), self.value(inputs["height"], ("height", "int"))
        if "latent_image" in inputs and not through_samplers:
            return None
        onward = inputs.get("latent_image", self._pass_through(node_id))
        return self.latent_size(onward, through_samplers, hops + 1)

    def first_pass_sampler(self) -> str | None:
        """The sampler A1111 would call the first pass: one starting from an empty latent (not a
        hires or refiner pass), the lowest node id first."""
        def order(node_id: str) -> tuple[int, str]:
            return (int(node_id), "") if node_id.isdigit() else (1 << 62, node_id)

        samplers = sorted((i for i in self.nodes if self.class_type(i) in _COMFY_SAMPLER_NODES), key=order)
        for node_id in samplers:
            if self.latent_size(self.inputs(node_id).get("latent_image"), through_samplers=False) is not None:
                return node_id
        return samplers[0] if samplers else None


class ComfyUIReader:
    """ComfyUI: the ``prompt`` chunk's API graph, read from its first-pass KSampler."""

    name = "ComfyUI"

    def read(self, info: dict[str, Any]) -> ImageParameters | None:
        nodes = _json_object(info.get("prompt"))
        if nodes is None:
            return None
        graph = _ComfyGraph(nodes)
        if not graph.nodes:
            return None
        sampler = graph.first_pass_sampler()
        params: dict[str, str] = {}
        prompt = negative = ""
        if sampler is not None:
            inputs = graph.inputs(sampler)
            prompt = graph.text(inputs.get("positive")) or ""
            negative = graph.text(inputs.get("negative")) or ""
            _put(params, "Steps", _number(graph.value(inputs.get("steps"), ("steps", "int"))))
            _put_sampler(params, graph.value(inputs.get("sampler_name"), ("sampler_name",)),
                         graph.value(inputs.get("scheduler"), ("scheduler",)), COMFY_SAMPLERS, COMFY_SCHEDULERS)
            _put(params, "CFG scale", _number(graph.value(inputs.get("cfg"), ("cfg", "float"))))
            seed_name = "noise_seed" if "noise_seed" in inputs else "seed"
            _put(params, "Seed", _number(graph.value(inputs.get(seed_name), ("seed", "noise_seed", "int"))))
            size = graph.latent_size(inputs.get("latent_image"))
            if size is not None:
                _put_size(params, *size)
            loader = graph.find_upstream(inputs.get("model"), "model", ("ckpt_name", "unet_name"))
            if loader is not None:
                _put(params, "Model", _file_stem(loader[1].get("ckpt_name", loader[1].get("unet_name"))))
            denoise = _number(graph.value(inputs.get("denoise"), ("denoise", "float")))
            if denoise is not None and float(denoise) < 1:
                params["Denoising strength"] = denoise
            self._clip_skip(graph, inputs.get("positive"), params)
        if "Size-1" not in params and isinstance(info.get(IMAGE_SIZE_KEY), tuple):
            _put_size(params, *info[IMAGE_SIZE_KEY])  # img2img graphs: the image is the best guess
        return _result(self.name, info, prompt, negative, params)

    @staticmethod
    def _clip_skip(graph: _ComfyGraph, positive: Any, params: dict[str, str]) -> None:
        """CLIPSetLastLayer(stop_at_clip_layer=-2) is A1111's "Clip skip: 2"."""
        encoder = graph.encoder(positive)
        layer = graph.find_upstream(encoder.get("clip"), "clip", ("stop_at_clip_layer",)) if encoder else None
        stop = _number(graph.value(layer[1].get("stop_at_clip_layer"), ("int",))) if layer else None
        if stop is not None and stop.lstrip("-").isdigit() and -int(stop) > 1:
            params["Clip skip"] = str(-int(stop))


# --- InvokeAI ------------------------------------------------------------------------------------

