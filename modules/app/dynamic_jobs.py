"""A job whose prompt is a Dynamic Prompts template (modules/prompts/dynamic): the template is
expanded into one prompt, negative prompt and seed per picture, exactly as the extension computes
them, and each picture is made on its own (batch 1) with its prompt and seed. Easel's noise depends
on each picture's seed alone, so this gives the pictures A1111 makes in one batch; combinatorial
mode sets the number of pictures to the number of prompts. Each picture's infotext carries its own
resolved prompt, plus the template (`Template`, `Negative Template`) when the setting asks."""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING, Callable

from modules.generation.engine import GenerationResult, StepEvent
from modules.generation.request import GenerationRequest
from modules.prompts.dynamic import expand, template_params
from modules.sampling import noise

if TYPE_CHECKING:
    from modules.checkpoints.manager import LoadedModel
    from modules.generation.tasks import TaskContext, TaskRun
    from modules.prompts.dynamic import Expansion, WildcardLibrary


def expansion(request: GenerationRequest, library: "WildcardLibrary | None") -> "Expansion":
    """The request's prompts, negatives and seeds (its seed made concrete first)."""
    assert request.dynamic is not None
    return expand(request.prompt, request.negative_prompt, request.dynamic, request.batch_size * request.n_iter,
                  noise.resolve_seed(request.seed), noise.resolve_seed(request.subseed), request.subseed_strength, library=library)


def with_dynamic_prompts(run: "TaskRun", library: "WildcardLibrary | None", write_template: Callable[[], bool]) -> "TaskRun":
    """`run` once per expanded prompt when the request has an enabled Dynamic Prompts template."""
    def dynamic(model: "LoadedModel", request: GenerationRequest, ctx: "TaskContext") -> GenerationResult:
        if request.dynamic is None or not request.dynamic.enabled:
            return run(model, request, ctx)
        planned = expansion(replace(request, seed=noise.resolve_seed(request.seed), subseed=noise.resolve_seed(request.subseed)), library)
        result = GenerationResult(notes=list(planned.notes))
        total = planned.count
        for index, (prompt, negative, seed, subseed) in enumerate(zip(planned.prompts, planned.negatives, planned.seeds, planned.subseeds)):
            def on_step(event: StepEvent, index: int = index) -> None:
                if ctx.on_step is not None:
                    ctx.on_step(replace(event, image_index=index, image_count=total))

            one = replace(request, prompt=prompt, negative_prompt=negative, seed=seed, subseed=subseed, batch_size=1, n_iter=1, dynamic=None)
            part = run(model, one, replace(ctx, on_step=on_step))
            result.images += part.images
            result.seeds += part.seeds
            result.subseeds += part.subseeds
            result.image_seeds += part.image_seeds
            result.latents += part.latents
            result.detected_maps += part.detected_maps
            result.detection_previews += part.detection_previews
            result.image_prompts += [(prompt, negative)] * len(part.images)
            result.notes += [note for note in part.notes if note not in result.notes]
            result.extra_parameters.update(part.extra_parameters)
            for key, seconds in part.timings.items():
                result.timings[key] = result.timings.get(key, 0.0) + seconds
            if part.interrupted:
                result.interrupted = True
                break
        result.extra_parameters.update(template_params(request.prompt, request.negative_prompt, write_template()))
        return result
    return dynamic
