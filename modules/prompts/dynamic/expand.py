"""The prompts, negative prompts and seeds of one job whose prompt is a Dynamic Prompts template,
computed as sd-dynamic-prompts 2.17.1 computes them in `Script.process()` (sd_dynamic_prompts/
dynamic_prompting.py l.413-505, helpers.py `get_seeds`/`generate_prompts`, generator_builder.py),
with dynamicprompts 0.31.0's own generators.

`count` is the job's batch_size * n_iter; `seed`/`subseed` are the job's, already made concrete
(A1111's `fix_seed` runs first). The template is the prompt after styles were applied (the extension
reads `p.all_prompts[0]`).

Random mode (l.413-488, helpers.py l.14-45 and l.71-106):

- the prompt generator is seeded with the job's seed; image i's prompt is drawn after reseeding it
  with image i's seed, which is seed + i, or the seed for every image with `use_fixed_seed` (so all
  images get the same seed *and* the same prompt). The images' seeds are replaced the same way
  (subseeds: subseed + i, or all the subseed with `use_fixed_seed`). A prompt therefore comes back
  from its picture's infotext: expanding the template with count 1 and the picture's seed gives
  it (except with weighted wildcard entries, which dynamicprompts draws ten at a time, or `@{...}`
  cyclical variants, which depend on the position in the job; the whole job always comes back);
- the negative template is expanded the same way with the same seeds, by its own generator when
  `disable_negative_prompt` is on (the default; it only keeps prompt magic off negatives), else by
  the prompt's generator;
- with a variation seed (subseed strength > 0) the prompt is frozen: one prompt, drawn first from
  a generator seeded with the seed, for every image (frozenprompt_generator.py), and every image
  keeps the seed (A1111's rule);
- `unlink_seed_from_prompt`: prompts are drawn one after the other from one random stream that
  has nothing to do with the seed (the extension uses the library's shared, unseeded `Random`;
  Easel draws its seed from the system unless `unlinked_seed` is given), prompts and negatives
  from that same stream; the images keep A1111's seeds (seed + i), `use_fixed_seed` included.

Combinatorial mode (l.416-420, 495-505; helpers.py `generate_prompt_cross_product`):

- every combination in dynamicprompts' order, the list repeated `combinatorial_batches` times; with
  `max_generations` > 0 each repetition is cut to its first max_generations prompts and the
  negative prompts to max_generations (repeated in turn); with 0, every prompt is paired with
  every negative prompt (a plain negative counts once per batch, so batches B give B x B copies);
- the number of images becomes the number of prompts (A1111 runs ceil(count / batch_size)
  batches, the last one short); seeds are seed + i, or with `use_fixed_seed` the seed + b for
  every image of repetition b.

Where Easel differs on purpose: with `max_generations` 0 the extension lists every combination
(10^9 of them never end); Easel stops at `limit` images (1000 by default) with a note, never
listing more than that, and also caps a larger max_generations x batches the same way. An empty
prompt template is left as it is (the extension fails on it). Negative prompts cut shorter than the
prompts (max_generations with several batches, where A1111 would fail) are repeated to match.
Errors are `DynamicPromptsError` (the extension writes its error text as the prompt).
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from itertools import cycle, islice, product

from dynamicprompts.generators import CombinatorialPromptGenerator, RandomPromptGenerator
from pyparsing import ParseBaseException

from modules.prompts.dynamic.args import DynamicPromptsError, DynamicRequest
from modules.prompts.dynamic.syntax import may_hold_syntax, parse_template, protect, restore
from modules.prompts.dynamic.wildcards import WildcardLibrary

DEFAULT_LIMIT = 1000  # dynamicprompts' MAX_IMAGES: the most images one combinatorial template yields


@dataclass
class Expansion:
    """One job's prompts, negative prompts and seeds, image by image, and notes for the user."""

    prompts: list[str]
    negatives: list[str]
    seeds: list[int]
    subseeds: list[int]
    notes: list[str] = field(default_factory=list)
    capped: bool = False  # combinatorial mode stopped at the limit

    @property
    def count(self) -> int:
        return len(self.prompts)


def default_seeds(count: int, seed: int, subseed: int, subseed_strength: float) -> tuple[list[int], list[int]]:
    """A1111's seeds for a job: seed + i (the seed for all with a variation seed), subseed + i."""
    return [seed + (i if subseed_strength == 0 else 0) for i in range(count)], [subseed + i for i in range(count)]


def extension_seeds(count: int, seed: int, subseed: int, subseed_strength: float, request: DynamicRequest) -> tuple[list[int], list[int]]:
    """helpers.py `get_seeds`. With a fixed seed in combinatorial mode, repetition b gets seed + b
    (the extension's list is short when count is not a multiple of the batches; Easel extends it)."""
    if not request.use_fixed_seed:
        return default_seeds(count, seed, subseed, subseed_strength)
    if request.combinatorial:
        batches = request.combinatorial_batches
        per = max(1, count // batches)
        return [seed + min(i // per, batches - 1) for i in range(count)], [subseed] * count
    return [seed] * count, [subseed] * count


def hires_prompts(prompts: list[str], hires_template: str, template: str) -> list[str]:
    """The hires pass's prompts (dynamic_prompting.py `_get_hr_fix_prompts`): the expanded prompts
    when the hires prompt is the prompt, else the hires prompt as written, for every image."""
    return list(prompts) if hires_template == template else [hires_template] * len(prompts)


def _check(text: str, negative: bool, library: WildcardLibrary) -> None:
    if text and may_hold_syntax(text):
        library.check(parse_template(text, negative=negative))


def _random(template: str, negative: str, request: DynamicRequest, count: int, seed: int, subseed: int,
            subseed_strength: float, library: WildcardLibrary, ignore_whitespace: bool, unlinked_seed: int | None) -> Expansion:
    manager = library.manager
    frozen = subseed_strength > 0  # helpers.py should_freeze_prompt
    if request.unlink_seed_from_prompt:
        stream = unlinked_seed if unlinked_seed is not None else random.SystemRandom().randrange(2**32)
        generator = RandomPromptGenerator(manager, seed=stream, ignore_whitespace=ignore_whitespace)
        negative_generator = generator  # the extension's two generators share the library's one Random
        seeds, subseeds = default_seeds(count, seed, subseed, subseed_strength)
        prompt_seeds: list[int] | None = None
    else:
        generator = RandomPromptGenerator(manager, seed=seed, ignore_whitespace=ignore_whitespace)
        negative_generator = (RandomPromptGenerator(manager, seed=seed, ignore_whitespace=ignore_whitespace)
                              if request.disable_negative_prompt else generator)
        seeds, subseeds = extension_seeds(count, seed, subseed, subseed_strength, request)
        prompt_seeds = seeds

    def draw(source: RandomPromptGenerator, text: str, with_seeds: list[int] | None) -> list[str]:
        if frozen:
            return source.generate(text, 1) * count
        return source.generate(text, count, seeds=with_seeds)

    prompts = draw(generator, template, prompt_seeds)
    negatives = draw(negative_generator, negative, prompt_seeds) if negative else [""] * count
    return Expansion(prompts, negatives, seeds, subseeds)


def _combinations(text: str, request: DynamicRequest, frozen: bool, take: int, library: WildcardLibrary,
                  ignore_whitespace: bool) -> tuple[list[str], bool]:
    """One template's prompts for all batches (BatchedCombinatorialPromptGenerator), at most `take`
    per batch; and whether there were more."""
    if not text:
        return [""], False
    generator = CombinatorialPromptGenerator(library.manager, ignore_whitespace=ignore_whitespace)
    batches = request.combinatorial_batches
    if frozen:  # FrozenPromptGenerator over the batched generator: its first prompt, batches x (max_generations or 1)
        first = generator.generate(text, 1)
        return (first * batches * (request.max_generations or 1)) or [""], False
    found = generator.generate(text, take + 1)
    more = len(found) > take
    return (found[:take] * batches) or [""], more


def _combinatorial(template: str, negative: str, request: DynamicRequest, seed: int, subseed: int, subseed_strength: float,
                   library: WildcardLibrary, ignore_whitespace: bool, limit: int) -> Expansion:
    frozen = subseed_strength > 0
    maximum = request.max_generations
    take = min(maximum, limit) if maximum > 0 else limit
    prompts, more = _combinations(template, request, frozen, take, library, ignore_whitespace)
    negatives, more_negatives = _combinations(negative, request, frozen, take, library, ignore_whitespace)
    capped = (maximum == 0 and (more or more_negatives)) or (maximum > limit and more)
    if maximum == 0:
        pairs = list(islice(product(prompts, negatives), limit + 1))
        capped = capped or len(pairs) > limit
        prompts, negatives = [p for p, _ in pairs[:limit]], [n for _, n in pairs[:limit]]
    else:
        if len(prompts) > limit:
            prompts, capped = prompts[:limit], True
        negatives = list(islice(cycle(negatives), min(maximum, len(prompts))))  # helpers.py repeat_iterable_to_length
        negatives = list(islice(cycle(negatives), len(prompts)))
    if request.unlink_seed_from_prompt and maximum and len(prompts) == maximum:
        seeds, subseeds = default_seeds(len(prompts), seed, subseed, subseed_strength)  # the extension leaves A1111's seeds
    else:
        seeds, subseeds = extension_seeds(len(prompts), seed, subseed, subseed_strength, request)
    expansion = Expansion(prompts, negatives, seeds, subseeds, capped=capped)
    if capped:
        expansion.notes.append(f"Combinatorial generation stopped at {limit} images: the template has more combinations. Set max generations to choose how many.")
    return expansion


def expand(template: str, negative_template: str, request: DynamicRequest, count: int, seed: int, subseed: int = 0,
           subseed_strength: float = 0.0, *, library: WildcardLibrary | None = None, limit: int = DEFAULT_LIMIT,
           ignore_whitespace: bool = False, unlinked_seed: int | None = None) -> Expansion:
    """The job's prompts as the extension computes them (module docstring); `DynamicPromptsError`
    for a template, wildcard or setting Easel cannot use."""
    request.check()
    if not request.enabled or not template:
        seeds, subseeds = default_seeds(count, seed, subseed, subseed_strength)
        return Expansion([template] * count, [negative_template] * count, seeds, subseeds)
    library = library if library is not None else WildcardLibrary([])
    protected, protected_negative = protect(template), protect(negative_template)
    _check(protected, False, library)
    _check(protected_negative, True, library)
    try:
        if request.combinatorial:
            expansion = _combinatorial(protected, protected_negative, request, seed, subseed, subseed_strength,
                                       library, ignore_whitespace, max(1, limit))
        else:
            expansion = _random(protected, protected_negative, request, count, seed, subseed, subseed_strength,
                                library, ignore_whitespace, unlinked_seed)
    except RecursionError:
        raise DynamicPromptsError("The template's wildcards or variables refer to each other without end: remove the loop.") from None
    except KeyError as error:
        detail = error.args[0] if error.args else error
        raise DynamicPromptsError(f"The template uses a variable it never sets ({detail}): set the variable before using it.") from None
    except ParseBaseException as error:
        raise DynamicPromptsError(f"A wildcard entry cannot be read: {error}.") from None
    expansion.prompts = [restore(text) for text in expansion.prompts]
    expansion.negatives = [restore(text) for text in expansion.negatives]
    return expansion
