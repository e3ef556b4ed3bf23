"""Property tests of the image metadata readers (modules/infotext/embed.py, foreign/): any bytes,
structure-aware mutations of valid files (PNG chunks with correct CRCs, so the damage reaches the
text decoders; Exif directories with random entries) and random metadata for every other tool's
keys give a result or UnreadableImageError (a UserError), never another exception; valid files
with any text read back that text.

tests/unit/test_metadata_fuzz.py runs tools/fuzz_metadata.py's random byte mutations; these add
hypothesis-driven structure. Budgets: see tests/fuzz/fuzzing.py."""

from __future__ import annotations

import io
import json
import struct
import warnings
import zlib

import pytest
from hypothesis import example, strategies as st
from PIL import Image

from modules.errors import UserError
from modules.infotext.embed import ImageSaveError, image_bytes_with_infotext, read_infotext, well_formed
from modules.infotext.foreign import IMAGE_SIZE_KEY, ImageParameters, read_image_parameters, read_info
from modules.infotext.parse import parse_infotext
from tests.fuzz.fuzzing import fuzz
from tools.fuzz_metadata import COMFY_PROMPT, seed_files

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")  # PIL warns about the corrupt Exif it reads safely

_IMAGE = Image.new("RGB", (16, 16), (200, 120, 40))
SEEDS = seed_files()


def _read_or_user_error(data: bytes) -> None:
    for reader in (read_infotext, read_image_parameters):
        try:
            result = reader(data)
        except UserError:
            continue
        assert result is None or isinstance(result, (str, ImageParameters))
        if isinstance(result, ImageParameters):
            assert all(isinstance(v, str) for v in result.params.values()), result.params
            if result.infotext is not None:
                parse_infotext(result.infotext)


_MAGIC = [b"", b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff\xe1", b"RIFF\x00\x01\x00\x00WEBPVP8X", b"GIF89a", b"II*\x00", b"BM"]


@fuzz(150, head=st.sampled_from(_MAGIC), tail=st.binary(max_size=600))
@example(head=b"\x89PNG\r\n\x1a\n", tail=b"\x00\x00\x00\x0dIHDR")
def test_arbitrary_bytes_are_read_or_refused_clearly(head, tail):
    _read_or_user_error(head + tail)


def _chunk(kind: bytes, data: bytes, crc_ok: bool = True, length: int | None = None) -> bytes:
    crc = zlib.crc32(kind + data) if crc_ok else 0
    return struct.pack(">I", len(data) if length is None else length) + kind + data + struct.pack(">I", crc & 0xFFFFFFFF)


_keywords = st.sampled_from([b"parameters", b"prompt", b"workflow", b"Comment", b"Description", b"invokeai_metadata",
                             b"fooocus_scheme", b"Software", b"", b"x" * 90])
_text_bytes = st.one_of(st.binary(max_size=200), st.text(max_size=80).map(lambda t: t.encode("utf-8", "surrogatepass")),
                        st.just(json.dumps(COMFY_PROMPT).encode()))
_text_chunks = st.one_of(
    st.tuples(st.just(b"tEXt"), st.builds(lambda k, v: k + b"\0" + v, _keywords, _text_bytes)),
    st.tuples(st.just(b"zTXt"), st.builds(lambda k, m, v: k + b"\0" + m + v, _keywords, st.sampled_from([b"\0", b"\1"]),
                                          st.one_of(_text_bytes.map(zlib.compress), st.binary(max_size=60),
                                                    st.just(zlib.compress(b"a" * 3_000_000))))),
    st.tuples(st.just(b"iTXt"), st.builds(lambda k, flag, v: k + b"\0" + flag + b"\0en\0\0" + (zlib.compress(v) if flag[0] else v),
                                          _keywords, st.sampled_from([b"\0", b"\1", b"\2"]), _text_bytes)),
    st.tuples(st.just(b"eXIf"), st.binary(max_size=120)),
    st.tuples(st.sampled_from([b"IEND", b"IDAT", b"tIME", b"pHYs", b"iCCP", b"sRGB", b"acTL", b"fcTL"]), st.binary(max_size=40)),
)


def _valid_png_parts():
    data = image_bytes_with_infotext(_IMAGE, "", "png")
    parts, pos = [], 8
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos:pos + 4])
        parts.append((data[pos + 4:pos + 8], data[pos + 8:pos + 8 + length]))
        pos += 12 + length
    return parts  # [(b"IHDR", ...), (b"IDAT", ...), (b"IEND", b"")]


_PNG_PARTS = _valid_png_parts()


@fuzz(150, extra=st.lists(st.tuples(st.integers(0, 3), _text_chunks, st.booleans(), st.none() | st.integers(0, 2**32 - 1)),
                          max_size=4))
@example(extra=[(2, (b"iCCP", b""), True, None)])  # an empty iCCP after IDAT: PIL's IndexError escaped (found by bench/fuzz.py)
def test_pngs_with_random_text_chunks_are_read_or_refused_clearly(extra):
    chunks = [_chunk(kind, data) for kind, data in _PNG_PARTS]
    for where, (kind, data), crc_ok, length in extra:
        chunks.insert(min(where, len(chunks)), _chunk(kind, data, crc_ok, length))
    _read_or_user_error(b"\x89PNG\r\n\x1a\n" + b"".join(chunks))


mutations = st.lists(st.one_of(
    st.tuples(st.just("flip"), st.integers(0, 10**6), st.integers(0, 7)),
    st.tuples(st.just("truncate"), st.integers(0, 10**6)),
    st.tuples(st.just("overwrite"), st.integers(0, 10**6), st.binary(min_size=1, max_size=8)),
    st.tuples(st.just("u32"), st.integers(0, 10**6), st.sampled_from([0, 1, 0x7FFFFFFF, 0xFFFFFFFF, 0x10000, 65535])),
    st.tuples(st.just("u16"), st.integers(0, 10**6), st.sampled_from([0, 1, 0xFFFF, 0x8000, 2, 0x9286, 0x8769])),
), min_size=1, max_size=4)


def _mutate(data: bytes, steps) -> bytes:
    out = bytearray(data)
    for kind, at, *args in steps:
        if not out:
            break
        at %= len(out)
        if kind == "flip":
            out[at] ^= 1 << args[0]
        elif kind == "truncate":
            del out[at:]
        elif kind == "overwrite":
            out[at:at + len(args[0])] = args[0]
        elif kind == "u32":
            out[at:at + 4] = struct.pack(">I", args[0])
        else:
            out[at:at + 2] = struct.pack("<H" if at % 2 else ">H", args[0])
    return bytes(out)


@fuzz(150, index=st.integers(0, len(SEEDS) - 1), steps=mutations)
def test_mutated_valid_files_are_read_or_refused_clearly(index, steps):
    _read_or_user_error(_mutate(SEEDS[index], steps))


def _ifd(entries, next_offset=0, base=8):
    """A TIFF IFD at `base` with (tag, type, count, value bytes) entries; values past 4 bytes follow it."""
    head = struct.pack("<H", len(entries))
    tail = b""
    data_at = base + 2 + 12 * len(entries) + 4
    for tag, kind, count, value in entries:
        if len(value) <= 4:
            head += struct.pack("<HHI", tag, kind, count) + value.ljust(4, b"\0")
        else:
            head += struct.pack("<HHII", tag, kind, count, data_at + len(tail))
            tail += value
    return head + struct.pack("<I", next_offset) + tail


_entries = st.lists(st.tuples(
    st.sampled_from([0x9286, 0x927C, 0x0110, 0x010F, 0x8769, 0x8825, 0x0100, 0x0132, 0xFFFF]),
    st.integers(0, 13), st.integers(0, 2**32 - 1) | st.integers(0, 64), st.binary(max_size=40)), max_size=6)


@fuzz(150, entries=_entries, inner=_entries, fmt=st.sampled_from(["jpg", "webp"]), header=st.sampled_from([b"Exif\0\0", b""]))
@example(entries=[(0x8769, 4, 1, struct.pack("<I", 8))], inner=[], fmt="jpg", header=b"Exif\0\0")  # an Exif IFD pointing at itself
def test_random_exif_directories_are_read_or_refused_clearly(entries, inner, fmt, header):
    ifd0 = _ifd(entries + [(0x8769, 4, 1, b"\0\0\0\0")])
    exif_ifd = _ifd(inner, base=8 + len(ifd0))
    ifd0 = _ifd(entries + [(0x8769, 4, 1, struct.pack("<I", 8 + len(ifd0)))])
    exif = header + b"II*\x00" + struct.pack("<I", 8) + ifd0 + exif_ifd
    buffer = io.BytesIO()
    _IMAGE.save(buffer, format="JPEG" if fmt == "jpg" else "WEBP", exif=exif)
    _read_or_user_error(buffer.getvalue())


_infotexts = st.one_of(
    st.text(max_size=300),
    st.text(st.characters(codec=None, categories=["Cs", "Cc", "Lo", "So", "Zs"]), max_size=50),
    st.sampled_from(["a\x00b", "\x00", "x" * 40_000, "\u65e5\u672c\U0001f436\nNegative prompt: \u00e9\nSteps: 1, Seed: 2, CFG scale: 3",
                     "\ud800 lone", "\udc00\ud83d\ude00", "UNICODE\x00", "ASCII\x00\x00\x00x"]),
)


@fuzz(150, text=_infotexts, fmt=st.sampled_from(["png", "jpg", "webp"]))
@example(text="\ud800 lone", fmt="png")  # was UnicodeEncodeError (a 500 for an API prompt with "\ud800")
@example(text="\ud800 lone", fmt="jpg")  # was written as "?"
@example(text="x" * 40_000, fmt="jpg")
def test_text_stored_in_an_image_is_read_back(text, fmt):
    try:
        data = image_bytes_with_infotext(_IMAGE, text, fmt)
    except ImageSaveError:
        assert fmt == "jpg" and len(text) > 30_000  # a JPEG's Exif segment holds 64 kB
        return
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a clean file reads without PIL's corrupt-Exif warnings
        assert read_infotext(data) == (well_formed(text) or None)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=10),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=20,
)
_tool_values = st.one_of(
    json_values.map(json.dumps),
    st.text(max_size=60),
    st.fixed_dictionaries({}, optional={
        "steps": json_values, "sampler": json_values, "seed": json_values, "scale": json_values, "uc": json_values,
        "width": json_values, "height": json_values, "strength": json_values, "noise": json_values,
    }).map(json.dumps),
    st.dictionaries(st.sampled_from(list(COMFY_PROMPT)), st.fixed_dictionaries(
        {"class_type": st.sampled_from(["KSampler", "CheckpointLoaderSimple", "CLIPTextEncode", "EmptyLatentImage", "X"]) | json_values},
        optional={"inputs": st.dictionaries(st.sampled_from(["seed", "steps", "cfg", "text", "positive", "negative", "model",
                                                              "ckpt_name", "width", "latent_image", "sampler_name"]),
                                            json_values | st.tuples(st.sampled_from(list(COMFY_PROMPT)), st.integers(-2, 3)).map(list))},
    ), max_size=5).map(json.dumps),
)
_tool_keys = ["parameters", "prompt", "workflow", "Comment", "Description", "Software", "Title", "invokeai_metadata",
              "invokeai_graph", "sd-metadata", "Dream", "fooocus_scheme", "comment"]


@fuzz(120, info=st.dictionaries(st.sampled_from(_tool_keys), _tool_values, max_size=5),
      size=st.tuples(st.integers(0, 4096), st.integers(0, 4096)))
@example(info={"Software": "NovelAI", "Description": "a", "Comment": '{"steps": 1e999, "seed": -0.0, "scale": null}'}, size=(8, 8))
@example(info={"prompt": json.dumps({"3": {"class_type": "KSampler", "inputs": {"positive": ["3", 0], "model": ["3", 0]}}})}, size=(8, 8))
def test_any_metadata_of_other_tools_gives_a_summary_not_an_error(info, size):
    result = read_info({**info, IMAGE_SIZE_KEY: size})
    assert isinstance(result, ImageParameters)
    assert isinstance(result.prompt, str) and isinstance(result.negative_prompt, str)
    assert all(isinstance(key, str) and isinstance(value, str) for key, value in result.params.items()), result.params
    if result.infotext is not None:
        parse_infotext(result.infotext)
