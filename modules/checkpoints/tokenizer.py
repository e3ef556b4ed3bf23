"""The CLIP BPE tokenizer, built offline from the vocabulary file that ships in `open-clip-torch`.

Every Stable Diffusion text encoder (OpenAI CLIP-L, OpenCLIP ViT-H and ViT-bigG) uses the same
49,408-token byte-level BPE vocabulary. Its only source file, `bpe_simple_vocab_16e6.txt.gz` (MIT
licence), ships inside the PyPI package `open-clip-torch`; we read it from there without importing
`open_clip` (whose import pulls in torch models, timm and more), expand it into the `vocab.json` +
`merges.txt` folder that `transformers.CLIPTokenizer` reads, and cache that folder on disk.

The vocabulary is built exactly like `open_clip.tokenizer.SimpleTokenizer`: the 256 GPT-2 byte
characters, the same 256 with `</w>`, one entry per merge (the two halves joined), then
`<|startoftext|>` (49406) and `<|endoftext|>` (49407). The two tokenizer styles differ only in the
padding token: OpenAI CLIP (SD1, SDXL's first encoder) pads with `<|endoftext|>`, OpenCLIP (SD2,
SDXL's second encoder) pads with `!` (id 0).
"""

from __future__ import annotations

import gzip
import importlib.util
import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from modules.errors import ModelLoadError
from modules.files import write_atomically

if TYPE_CHECKING:  # transformers is imported lazily: importing this module must stay cheap.
    from transformers import CLIPTokenizer

BPE_FILE_NAME = "bpe_simple_vocab_16e6.txt.gz"
BOS_TOKEN = "<|startoftext|>"
EOS_TOKEN = "<|endoftext|>"
SD1_PAD_TOKEN = EOS_TOKEN  # OpenAI CLIP style
OPENCLIP_PAD_TOKEN = "!"  # OpenCLIP style (SD2, SDXL text_encoder_2)
MODEL_MAX_LENGTH = 77
VOCAB_SIZE = 49408
MERGE_COUNT = 49152 - 256 - 2  # 48,894: the merges open_clip keeps from the file

# Folder name per pad style. The version suffix changes whenever the files we write change, so an
# old cache is never mistaken for a current one.
_FORMAT_VERSION = 1
_STYLE_FOLDERS = {
    SD1_PAD_TOKEN: f"clip-tokenizer-pad-eos-v{_FORMAT_VERSION}",
    OPENCLIP_PAD_TOKEN: f"clip-tokenizer-pad-bang-v{_FORMAT_VERSION}",
}
_FILE_NAMES = ("vocab.json", "merges.txt", "tokenizer_config.json", "special_tokens_map.json")


def bytes_to_unicode() -> dict[int, str]:
    """GPT-2's reversible map from the 256 byte values to printable unicode characters.

    Printable bytes map to themselves; the rest are shifted above U+0100 so that no BPE symbol is
    whitespace or a control character. The insertion order of the dict is the vocabulary order.
    """
    printable = (
        list(range(ord("!"), ord("~") + 1))
        + list(range(ord("¡"), ord("¬") + 1))
        + list(range(ord("®"), ord("ÿ") + 1))
    )
    chars = list(printable)
    shifted = 0
    for byte in range(256):
        if byte not in printable:
            printable.append(byte)
            chars.append(256 + shifted)
            shifted += 1
    return {byte: chr(char) for byte, char in zip(printable, chars)}


def bpe_vocab_path() -> Path:
    """The path of `bpe_simple_vocab_16e6.txt.gz` inside the installed open-clip-torch package."""
    spec = importlib.util.find_spec("open_clip")
    locations = list(spec.submodule_search_locations or []) if spec is not None else []
    if not locations:
        raise ModelLoadError(
            "The CLIP tokenizer vocabulary is missing: the package open-clip-torch is not installed. "
            "Install it with `pip install --no-deps open-clip-torch` (only its vocabulary file is used)."
        )
    path = Path(locations[0]) / BPE_FILE_NAME
    if not path.is_file():
        raise ModelLoadError(
            f"The CLIP tokenizer vocabulary {path} is missing from the installed open-clip-torch. "
            "Reinstall it with `pip install --no-deps --force-reinstall open-clip-torch`."
        )
    return path


def read_merges(bpe_path: Path) -> list[tuple[str, str]]:
    """The 48,894 BPE merges open_clip uses: lines [1 : 49152-256-2+1] of the decompressed file."""
    try:
        lines = gzip.decompress(bpe_path.read_bytes()).decode("utf-8").split("\n")
    except (OSError, EOFError, UnicodeDecodeError) as error:
        raise ModelLoadError(
            f"The CLIP tokenizer vocabulary {bpe_path} is unreadable ({error}). "
            "Reinstall it with `pip install --no-deps --force-reinstall open-clip-torch`."
        ) from error
    merges = [tuple(line.split()) for line in lines[1 : MERGE_COUNT + 1]]
    if len(merges) != MERGE_COUNT or any(len(merge) != 2 for merge in merges):
        raise ModelLoadError(
            f"The CLIP tokenizer vocabulary {bpe_path} is not the expected file "
            f"({len(merges)} merges where {MERGE_COUNT} were expected)."
        )
    return merges  # type: ignore[return-value]


def build_vocab(merges: list[tuple[str, str]]) -> dict[str, int]:
    """Token -> id, in open_clip's order: bytes, bytes + `</w>`, joined merges, BOS, EOS."""
    byte_chars = list(bytes_to_unicode().values())
    tokens = byte_chars + [char + "</w>" for char in byte_chars]
    tokens += ["".join(merge) for merge in merges]
    tokens += [BOS_TOKEN, EOS_TOKEN]
    vocab = {token: index for index, token in enumerate(tokens)}
    if len(vocab) != VOCAB_SIZE:
        raise ModelLoadError(f"The CLIP vocabulary has {len(vocab)} distinct tokens where {VOCAB_SIZE} were expected.")
    return vocab


def tokenizer_config(pad_token: str) -> dict[str, Any]:
    """The `tokenizer_config.json` of a CLIP tokenizer with the given pad token.

    The same dict is shipped in the family config folders (family_configs/*/tokenizer*/).
    """
    return {
        "tokenizer_class": "CLIPTokenizer",
        "model_max_length": MODEL_MAX_LENGTH,
        "bos_token": BOS_TOKEN,
        "eos_token": EOS_TOKEN,
        "unk_token": EOS_TOKEN,
        "pad_token": pad_token,
        "add_prefix_space": False,
        "do_lower_case": True,
        "errors": "replace",
        "clean_up_tokenization_spaces": True,
        # With "!" as the pad token, transformers would also match every "!" typed in a prompt as
        # the special pad token (id 0) instead of BPE-encoding it ("!" -> 256, "!!" -> 748) as
        # open_clip does (diffusers issue #4153). Splitting special tokens keeps the text as text;
        # BOS/EOS are still added by the post-processor and padding still uses id 0.
        "split_special_tokens": pad_token == OPENCLIP_PAD_TOKEN,
    }


def _style_folder(pad_token: str) -> str:
    try:
        return _STYLE_FOLDERS[pad_token]
    except KeyError:
        raise ValueError(
            f"Unsupported CLIP pad token {pad_token!r}: use {SD1_PAD_TOKEN!r} (SD1) or {OPENCLIP_PAD_TOKEN!r} (OpenCLIP)."
        ) from None


def _is_complete(folder: Path) -> bool:
    return all((folder / name).is_file() for name in _FILE_NAMES)


def _file_texts(pad_token: str) -> dict[str, str]:
    """The tokenizer folder's files (name -> text) for `pad_token`."""
    merges = read_merges(bpe_vocab_path())
    merge_lines = "\n".join(f"{a} {b}" for a, b in merges)
    special = {"bos_token": BOS_TOKEN, "eos_token": EOS_TOKEN, "unk_token": EOS_TOKEN, "pad_token": pad_token}
    return {
        "vocab.json": json.dumps(build_vocab(merges), ensure_ascii=False),
        "merges.txt": f"#version: 0.2\n{merge_lines}\n",
        "tokenizer_config.json": json.dumps(tokenizer_config(pad_token), indent=2),
        "special_tokens_map.json": json.dumps(special, indent=2),
    }


def ensure_tokenizer_files(cache_dir: Path, pad_token: str) -> Path:
    """Write the tokenizer folder for `pad_token` under `cache_dir` once; return the folder.

    Each file is written atomically and the folder counts as complete only when all of them are
    there, so a crash or a concurrent writer (who writes the same bytes) never leaves a half-written
    file that a later call would use; a later call completes an incomplete folder. A complete folder
    from an earlier call is reused as is.
    """
    folder = Path(cache_dir) / _style_folder(pad_token)
    if _is_complete(folder):
        return folder
    texts = _file_texts(pad_token)
    try:
        for name, text in texts.items():
            write_atomically(folder / name, text)
    except OSError as error:
        raise ModelLoadError(f"Cannot write the CLIP tokenizer files under {cache_dir}: {error}.") from error
    return folder


def load_clip_tokenizer(cache_dir: Path, pad_token: str = SD1_PAD_TOKEN) -> CLIPTokenizer:
    """A `transformers.CLIPTokenizer` (Rust-backed) built from local files only.

    `pad_token` is `"<|endoftext|>"` for SD1 and SDXL's first encoder, `"!"` for SD2 and SDXL's
    second encoder.
    """
    folder = ensure_tokenizer_files(cache_dir, pad_token)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from transformers import CLIPTokenizer

    try:
        return CLIPTokenizer.from_pretrained(str(folder), local_files_only=True)
    except (OSError, ValueError) as error:
        raise ModelLoadError(
            f"The CLIP tokenizer files in {folder} could not be loaded ({error}). Delete that folder to rebuild it."
        ) from error
