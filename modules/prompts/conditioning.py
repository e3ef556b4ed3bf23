"""Prompt text -> text-encoder conditioning, the way A1111 builds it (`sd_hijack_clip.py`).

1. The prompt is split into weighted segments by the emphasis parser; each segment is tokenized
   without start/end tokens and every token keeps its segment's weight.
2. Tokens are packed into chunks of 75. `BREAK` closes a chunk early; when a chunk fills and the last
   comma is at most 20 tokens back, the tokens after that comma move on to the next chunk.
3. Each chunk becomes BOS + 75 tokens (padded) + EOS = 77 ids and is encoded separately; the chunk
   outputs are concatenated along the sequence axis (B, 77·k, C).
4. Emphasis "Original": the hidden states are multiplied by the token weights, then rescaled so their
   mean equals the unweighted mean.
5. Textual-inversion embeddings (modules/prompts/embeddings.py): a trigger word's tokens become the
   embedding's vectors, one position each, never split across chunks (one that does not fit closes
   the chunk, as A1111 does); the text encoder's token-embedding output is overwritten there.
6. Which hidden layer is used: clip skip n takes the n-th layer from the end (1 = the last), followed
   by the final layer norm, as A1111 does for SD1; SD2 counts from its penultimate layer; SDXL takes
   the penultimate layer of both encoders without the final norm and adds the pooled output of the
   second encoder (from the first chunk).
"""

from __future__ import annotations

from contextlib import ExitStack
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Sequence

import torch

from modules.prompts.extra_networks import extract_extra_networks
from modules.prompts.parser import parse_emphasis
from modules.prompts.schedule import prompt_schedule, split_and

if TYPE_CHECKING:
    from modules.checkpoints.manager import TextEncoder
    from modules.prompts.embeddings import Embedding, EmbeddingLibrary

CHUNK_LENGTH = 75
COMMA_BACKTRACK = 20
BREAK = "BREAK"
PAD = -2  # placeholder for padding inside a chunk, resolved per encoder by `chunk_ids`
EMBEDDING = -3  # a position an embedding's vector fills (its token-embedding row is overwritten)


@dataclass(frozen=True)
class TokenChunk:
    """75 token ids (padding marked PAD) and their weights."""

    tokens: tuple[int, ...]
    weights: tuple[float, ...]
    fixes: tuple[tuple[int, "Embedding"], ...] = ()  # (offset in the chunk, embedding) of each embedding used


@dataclass
class Conditioning:
    """What the UNet is given for one prompt: the sequence of hidden states (1, 77·k, C), and for
    SDXL the pooled embedding (1, P)."""

    hidden: torch.Tensor
    pooled: torch.Tensor | None = None

    @property
    def length(self) -> int:
        return self.hidden.shape[1]


def tokenize_weighted(tokenizer: Any, segments: Sequence[tuple[str, float]]) -> list[tuple[int, float]]:
    """Token ids (no BOS/EOS) with per-token weights; BREAK becomes a marker (-1, -1.0)."""
    out: list[tuple[int, float]] = []
    texts = [text for text, weight in segments if not (text == BREAK and weight == -1)]
    encoded = iter(tokenizer(texts, truncation=False, add_special_tokens=False)["input_ids"]) if texts else iter(())
    for text, weight in segments:
        if text == BREAK and weight == -1:
            out.append((-1, -1.0))
            continue
        out.extend((token, weight) for token in next(encoded))
    return out


def splice_embeddings(weighted: Sequence[tuple[int, float]], triggers: dict[int, list[tuple[tuple[int, ...], "Embedding"]]]) -> list[tuple[Any, float]]:
    """The weighted tokens with every trigger word's tokens replaced by its Embedding (longest
    trigger first), keeping the weight of its first token."""
    if not triggers:
        return list(weighted)
    ids = [token for token, _ in weighted]
    out: list[tuple[Any, float]] = []
    index = 0
    while index < len(weighted):
        token, weight = weighted[index]
        for trigger, embedding in triggers.get(token, ()):
            if tuple(ids[index : index + len(trigger)]) == trigger:
                out.append((embedding, weight))
                index += len(trigger)
                break
        else:
            out.append((token, weight))
            index += 1
    return out


def pack_chunks(weighted: Sequence[tuple[Any, float]], pad_id: int, comma_id: int) -> list[TokenChunk]:
    """Packs weighted tokens into chunks of 75 with A1111's BREAK and comma-backtrack rules; an
    Embedding item takes as many positions as it has vectors and is never split."""
    from modules.errors import UserError

    chunks: list[TokenChunk] = []
    tokens: list[int] = []
    weights: list[float] = []
    fixes: list[tuple[int, Any]] = []
    last_comma = -1

    def close() -> None:
        nonlocal tokens, weights, last_comma, fixes
        padding = CHUNK_LENGTH - len(tokens)
        if padding > 0:
            tokens += [pad_id] * padding
            weights += [1.0] * padding
        chunks.append(TokenChunk(tuple(tokens), tuple(weights), tuple(fixes)))
        tokens, weights, fixes, last_comma = [], [], [], -1

    for token, weight in weighted:
        if not isinstance(token, int):  # an Embedding
            if token.count > CHUNK_LENGTH:
                raise UserError(f"The embedding {token.name!r} has {token.count} vectors; at most {CHUNK_LENGTH} fit in a prompt chunk.")
            if len(tokens) + token.count > CHUNK_LENGTH:
                close()
            fixes.append((len(tokens), token))
            tokens += [EMBEDDING] * token.count
            weights += [weight] * token.count
            continue
        if token == -1:
            close()
            continue
        if token == comma_id:
            last_comma = len(tokens)
        elif len(tokens) == CHUNK_LENGTH and last_comma != -1 and len(tokens) - last_comma <= COMMA_BACKTRACK:
            # Move the words after the last comma to the next chunk, so a phrase is not split.
            cut = last_comma + 1
            moved_tokens, moved_weights = tokens[cut:], weights[cut:]
            moved_fixes = [(offset - cut, e) for offset, e in fixes if offset >= cut]
            tokens, weights = tokens[:cut], weights[:cut]
            fixes = [(offset, e) for offset, e in fixes if offset < cut]
            close()
            tokens, weights, fixes = moved_tokens, moved_weights, moved_fixes
        if len(tokens) == CHUNK_LENGTH:
            close()
        tokens.append(token)
        weights.append(weight)
    if tokens or not chunks:
        close()
    return chunks


def token_count(tokenizer: Any, segments: Sequence[tuple[str, float]]) -> tuple[int, int]:
    """(tokens used, limit) for the UI counter: `N/75`, the limit growing by chunks of 75."""
    weighted = tokenize_weighted(tokenizer, segments)
    comma = tokenizer.convert_tokens_to_ids(",</w>")
    chunks = pack_chunks(weighted, pad_id=PAD, comma_id=comma)
    used = sum(1 for _, w in weighted if w != -1.0)
    return used, max(1, len(chunks)) * CHUNK_LENGTH


def count_prompt_tokens(tokenizer: Any, prompt: str, steps: int = 150) -> tuple[int, int]:
    """The token counter for a whole prompt, as A1111's UI shows it: extra networks (`<lora:...>`)
    removed, every `AND` part and every text the prompt takes over the steps counted, the largest
    one reported."""
    text, _ = extract_extra_networks(prompt)
    best = (0, CHUNK_LENGTH)
    for part, _ in split_and(text):
        for _, variant in prompt_schedule(part, steps):
            best = max(best, token_count(tokenizer, parse_emphasis(variant)))
    return best


@dataclass(frozen=True)
class EncoderPlan:
    """How one text encoder's output is taken (per family)."""

    layer_from_end: int  # 1 = last hidden layer
    final_norm: bool  # apply the encoder's final layer norm to a non-last layer
    pad_id: int


def _hidden(encoder: TextEncoder, ids: torch.Tensor, plan: EncoderPlan) -> tuple[torch.Tensor, torch.Tensor | None]:
    output = encoder(input_ids=ids, output_hidden_states=True)
    if plan.layer_from_end == 1 and plan.final_norm:
        hidden = output.last_hidden_state
    else:
        hidden = output.hidden_states[-plan.layer_from_end]
        if plan.final_norm:
            text_model = getattr(encoder, "text_model", encoder)
            hidden = text_model.get_submodule("final_layer_norm")(hidden)
    pooled = getattr(output, "text_embeds", None)
    return hidden, pooled


def apply_emphasis(hidden: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """A1111's "Original" emphasis: scale by the weights, then restore the original mean."""
    original_mean = hidden.mean()
    scaled = hidden * weights.reshape(weights.shape + (1,)).to(hidden.dtype)
    return scaled * (original_mean / scaled.mean())


def encode_chunks(
    encoders: Sequence[tuple[TextEncoder, EncoderPlan]],
    chunks: Sequence[TokenChunk],
    bos_id: int,
    eos_id: int,
    device: torch.device,
) -> Conditioning:
    """Encodes each chunk with every encoder (SDXL: concatenated on channels) and joins the chunks."""
    pieces: list[torch.Tensor] = []
    pooled: torch.Tensor | None = None
    for index, chunk in enumerate(chunks):
        weights = torch.tensor([[1.0, *chunk.weights, 1.0]], device=device)
        outputs = []
        for encoder, plan in encoders:
            ids = torch.tensor([chunk_ids(chunk, bos_id, eos_id, plan.pad_id)], device=device)
            with ExitStack() as stack:
                if chunk.fixes:
                    stack.callback(_splice_vectors(encoder, chunk.fixes).remove)
                hidden, pool = _hidden(encoder, ids, plan)
            if any(w != 1.0 for w in chunk.weights):
                hidden = apply_emphasis(hidden, weights)  # per encoder, as A1111's SDXL embedders do
            outputs.append(hidden)
            if index == 0 and pool is not None:
                pooled = pool
        pieces.append(torch.cat(outputs, dim=-1))
    return Conditioning(torch.cat(pieces, dim=1), pooled)


def _splice_vectors(encoder: TextEncoder, fixes: Sequence[tuple[int, Any]]):
    """A forward hook on `encoder`'s token embedding that writes each embedding's vectors at its
    positions (after the start token); returns the handle, removed after the call."""
    text_model = getattr(encoder, "text_model", encoder)
    layer = text_model.get_submodule("embeddings.token_embedding")

    def overwrite(module, inputs, output):
        output = output.clone()
        for offset, embedding in fixes:
            vectors = embedding.for_width(output.shape[-1])
            if vectors is not None:
                output[:, 1 + offset : 1 + offset + vectors.shape[0]] = vectors.to(output.device, output.dtype)
        return output

    return layer.register_forward_hook(overwrite, prepend=True)  # first: other hooks see the vectors


def chunk_ids(chunk: TokenChunk, bos_id: int, eos_id: int, pad_id: int) -> list[int]:
    """The 77 ids of a chunk. A1111 pads with the end token; an encoder whose pad differs
    (OpenCLIP: 0) gets everything after the first end token replaced by its pad. An embedding's
    positions hold the start token, whose row the hook overwrites (any id but the end token would
    do: the pooled output is read at the first end token)."""
    ids = [bos_id, *(eos_id if t == PAD else bos_id if t == EMBEDDING else t for t in chunk.tokens), eos_id]
    if pad_id != eos_id:
        first_end = ids.index(eos_id)
        ids = ids[: first_end + 1] + [pad_id] * (len(ids) - first_end - 1)
    return ids


class PromptEncoder:
    """Turns prompt texts into Conditioning for one loaded model, caching results by text.

    The cache is keyed by (prompt, clip skip) and holds the most recent `cache_size` prompts, so
    repeated generations with the same prompt skip the text encoder entirely.
    """

    def __init__(self, encoders: Sequence[tuple[TextEncoder, EncoderPlan]], tokenizer: Any, device: torch.device,
                 parse: Callable[[str], Sequence[tuple[str, float]]], cache_size: int = 16,
                 embeddings: "EmbeddingLibrary | None" = None, prepare: Callable[..., None] | None = None):
        self.encoders = list(encoders)
        self.prepare = prepare  # called with the encoder modules before they run (model CPU offload puts them on the GPU)
        self.embeddings = embeddings
        self.tokenizer = tokenizer
        self.device = device
        self.parse = parse
        self.cache_size = cache_size
        self._cache: dict[str, Conditioning] = {}
        self.bos_id = tokenizer.bos_token_id
        self.eos_id = tokenizer.eos_token_id
        self.comma_id = tokenizer.convert_tokens_to_ids(",</w>")

    def _triggers(self) -> dict:
        if self.embeddings is None or not self.encoders:
            return {}
        width = self.encoders[0][0].config.hidden_size  # SDXL's files carry a set for each encoder
        return self.embeddings.triggers(self.tokenizer, width)

    def chunks(self, prompt: str) -> list[TokenChunk]:
        weighted = splice_embeddings(tokenize_weighted(self.tokenizer, self.parse(prompt)), self._triggers())
        return pack_chunks(weighted, pad_id=PAD, comma_id=self.comma_id)

    def embeddings_used(self, prompt: str) -> list["Embedding"]:
        """The embeddings `prompt` uses, in order of first use."""
        used: dict[str, Any] = {}
        for chunk in self.chunks(prompt):
            for _, embedding in chunk.fixes:
                used.setdefault(embedding.name, embedding)
        return list(used.values())

    @torch.no_grad()
    def encode(self, prompt: str) -> Conditioning:
        key = prompt
        cached = self._cache.get(key)
        if cached is not None:
            return cached
        if self.prepare is not None:
            self.prepare(*(encoder for encoder, _ in self.encoders))
        result = encode_chunks(self.encoders, self.chunks(prompt), self.bos_id, self.eos_id, self.device)
        if len(self._cache) >= self.cache_size:
            self._cache.pop(next(iter(self._cache)))
        self._cache[key] = result
        return result
