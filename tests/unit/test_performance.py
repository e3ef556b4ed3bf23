"""modules/device/'s decisions: bf16 detection, threads, memory plans, the choices per device."""

from __future__ import annotations

import pytest
import torch

from modules.device.hardware import choose_dtype, explain_dtype
from modules.device.hardware import auto_cpu_dtype, choose_threads, cpu_bf16_support, cpu_flags, physical_cores
from modules.device.memory_plan import GiB, choose_memory_plan
from modules.device.optimizations import Optimizations, choose_optimizations

SAPPHIRE_RAPIDS = {"fpu", "avx2", "avx512f", "avx512_bf16", "amx_bf16", "amx_tile", "amx_int8"}
COOPER_LAKE = {"fpu", "avx2", "avx512f", "avx512_bf16"}
EPYC_ZEN3 = {"fpu", "avx2", "fma"}


def test_cpu_flags_are_read_from_cpuinfo_text():
    text = "processor\t: 0\nmodel name\t: X\nflags\t\t: fpu avx2 amx_bf16 amx_tile\n\nprocessor\t: 1\nflags\t\t: fpu\n"
    assert cpu_flags(text) == {"fpu", "avx2", "amx_bf16", "amx_tile"}
    assert cpu_flags("model name: no flags line") == set()


@pytest.mark.parametrize("flags, capability, expected", [
    (SAPPHIRE_RAPIDS, "AVX512", "amx"),
    (SAPPHIRE_RAPIDS, "AVX2", "avx512_bf16"),  # a torch build without AVX512 kernels cannot use AMX
    (COOPER_LAKE, "AVX512", "avx512_bf16"),
    (EPYC_ZEN3, "AVX2", "none"),
    (set(), "DEFAULT", "none"),
])
def test_bf16_support(flags, capability, expected):
    assert cpu_bf16_support(flags, capability) == expected


def test_auto_cpu_dtype_is_bf16_only_with_amx():
    assert auto_cpu_dtype(SAPPHIRE_RAPIDS, "AVX512") is torch.bfloat16
    assert auto_cpu_dtype(COOPER_LAKE, "AVX512") is torch.float32
    assert auto_cpu_dtype(EPYC_ZEN3, "AVX2") is torch.float32


def test_choose_dtype_auto_on_cpu_asks_the_cpu_rule():
    cpu = torch.device("cpu")
    assert choose_dtype(cpu, "auto", cpu_dtype=lambda: torch.bfloat16) is torch.bfloat16
    assert choose_dtype(cpu, "auto", cpu_dtype=lambda: torch.float32) is torch.float32
    assert choose_dtype(cpu, "fp32", cpu_dtype=lambda: torch.bfloat16) is torch.float32
    assert choose_dtype(torch.device("cuda"), "auto") is torch.float16


def test_easel_cpu_flags_replace_the_hosts_flags(monkeypatch):
    """EASEL_CPU_FLAGS makes Easel choose as on another CPU (how the suite is run as on a CPU
    without AMX, on one that has it)."""
    monkeypatch.setenv("EASEL_CPU_FLAGS", "fpu avx2 fma")
    assert cpu_flags() == EPYC_ZEN3
    assert auto_cpu_dtype(capability="AVX512") is torch.float32
    monkeypatch.setenv("EASEL_CPU_FLAGS", " ".join(sorted(SAPPHIRE_RAPIDS)))
    assert auto_cpu_dtype(capability="AVX512") is torch.bfloat16
    monkeypatch.setenv("EASEL_CPU_FLAGS", "")
    assert cpu_flags() == set() and cpu_bf16_support(capability="AVX512") == "none"
    assert cpu_flags("flags\t: amx_bf16\n") == {"amx_bf16"}  # text given: read, not overridden


def test_the_log_says_why_the_dtype_was_chosen():
    cpu = torch.device("cpu")
    assert explain_dtype(cpu, "auto", torch.bfloat16, lambda: "amx") == (
        "bfloat16 (auto: this CPU has AMX bf16 tiles, ~2.5x faster than float32; --dtype fp32 or bf16 to choose)")
    assert explain_dtype(cpu, "auto", torch.float32, lambda: "none").startswith("float32 (auto: this CPU has no bf16 instructions;")
    assert explain_dtype(cpu, "fp32", torch.float32, lambda: "amx") == "float32 (asked: --dtype or the 'dtype' setting)"
    assert explain_dtype(torch.device("cuda"), "auto", torch.float16) == "float16 (auto on cuda)"


def _cpuinfo(pairs: list[tuple[int, int]]) -> str:
    return "\n\n".join(f"processor\t: {i}\nphysical id\t: {p}\ncore id\t\t: {c}" for i, (p, c) in enumerate(pairs)) + "\n"


def test_physical_cores_count_hyperthreads_once():
    four_logical_two_cores = _cpuinfo([(0, 0), (0, 1), (0, 0), (0, 1)])
    assert physical_cores(four_logical_two_cores, allowed=4) == 2
    two_sockets = _cpuinfo([(0, 0), (1, 0), (0, 1), (1, 1)])
    assert physical_cores(two_sockets, allowed=4) == 4
    assert physical_cores(two_sockets, allowed=3) == 3  # the affinity mask caps it
    assert physical_cores("", allowed=6) == 6  # no topology: the CPUs allowed


def test_threads_override_wins():
    info = _cpuinfo([(0, 0), (0, 0)])
    assert choose_threads(None, info, allowed=2) == 1
    assert choose_threads(5, info, allowed=2) == 5


MODEL = int(2.2 * GiB)


@pytest.mark.parametrize("free_gib, expected", [(80, "full"), (6, "full"), (4.5, "low"), (3.3, "low"), (3, "offload"), (1, "offload")])
def test_memory_plan_from_free_memory(free_gib, expected):
    plan = choose_memory_plan(int(free_gib * GiB), MODEL, itemsize=2)
    assert plan.name == expected
    assert plan.attention_slicing == (expected != "full")
    assert plan.offload == (expected == "offload")
    assert plan.vae_tile_above_pixels is not None


def test_less_free_memory_tiles_from_smaller_pictures():
    limits = [choose_memory_plan(int(g * GiB), MODEL, 2).vae_tile_above_pixels for g in (80, 24, 8, 4, 3)]
    assert limits == sorted(limits, reverse=True) and limits[0] > limits[-1]
    assert choose_memory_plan(80 * GiB, MODEL, 2).vae_tile_above_pixels > 2048 * 2048  # a big GPU never tiles a 2K picture
    assert choose_memory_plan(1 * GiB, MODEL, 2).vae_tile_above_pixels == 256 * 256  # the floor


def test_memory_plan_override_and_cpu():
    assert choose_memory_plan(80 * GiB, MODEL, 2, "low").name == "low"
    assert choose_memory_plan(1 * GiB, MODEL, 2, "full").name == "full"
    cpu = choose_memory_plan(None, MODEL, 4)
    assert cpu.name == "full" and cpu.vae_tile_above_pixels is None and not cpu.attention_slicing
    assert choose_memory_plan(None, MODEL, 4, "low").attention_slicing
    assert choose_memory_plan(None, MODEL, 4, "offload").offload
    on_cpu = choose_optimizations(torch.device("cpu"), torch.float32, memory="offload")
    assert not on_cpu.offload and "nothing to offload to on a CPU" in on_cpu.describe()  # and the log line says so
    gpu = choose_optimizations(torch.device("cuda"), torch.float16, free_bytes=int(2 * GiB), model_bytes=MODEL)
    assert gpu.offload and gpu.attention_slicing and gpu.memory_plan == "offload" and "offload" in gpu.describe()
    with pytest.raises(ValueError):
        choose_memory_plan(None, MODEL, 4, "tiny")


def test_choices_per_device():
    assert choose_optimizations(torch.device("cpu"), torch.float32) == Optimizations(notes=choose_optimizations(torch.device("cpu"), torch.float32).notes)
    gpu = choose_optimizations(torch.device("cuda"), torch.float16, 40 * GiB, MODEL)
    assert gpu.channels_last and gpu.fuse_qkv and not gpu.attention_slicing and not gpu.compile and gpu.memory_plan == "full"
    small = choose_optimizations(torch.device("cuda"), torch.float16, 4 * GiB, MODEL)
    assert small.memory_plan == "low" and small.attention_slicing and not small.channels_last
    assert choose_optimizations(torch.device("cuda"), torch.float16, 40 * GiB, MODEL, fast_mode=True).compile
