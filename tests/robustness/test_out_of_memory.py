"""Out of memory in the middle of a job: the user reads what happened and what to try, the job's
tensors are freed, the worker lives on and the next job makes exactly the pixels a fresh run makes.

The failure comes from inside the real UNet's call: a forward pre-hook (torch's own hook point, no
patching) raises the real exception type on its Nth call, after allocating a tensor of its own so
that the test can see whether the failed job's memory is let go.
"""

from __future__ import annotations

import gc
import weakref

import pytest
import torch

from modules.errors import UserError
from modules.jobs import JobState
from modules.device.memory import OutOfMemoryError
from tests.robustness.rig import pixels, request

CUDA_TEXT = ("CUDA out of memory. Tried to allocate 20.00 GiB. GPU 0 has a total capacity of 23.65 GiB of which "
             "1.20 GiB is free. Of the allocated memory 21.10 GiB is allocated by PyTorch")
CPU_TEXT = ("[enforce fail at alloc_cpu.cpp:117] data. DefaultCPUAllocator: not enough memory: you tried to allocate "
            "21474836480 bytes.")
FAULTS = {
    "torch.OutOfMemoryError": lambda: torch.OutOfMemoryError(CUDA_TEXT),
    "MemoryError": lambda: MemoryError(),
    "RuntimeError not enough memory": lambda: RuntimeError(CPU_TEXT),
}


class FailOnCall:
    """A forward pre-hook that raises `fault()` on call number `n` (1-based) and on no other."""

    def __init__(self, n: int, fault):
        self.n, self.fault, self.calls = n, fault, 0
        self.held: list[weakref.ref] = []

    def __call__(self, module, args, kwargs):
        self.calls += 1
        if self.calls == self.n:
            scratch = torch.empty(256, 1024)  # what a failing allocation left behind in the job's frames
            self.held += [weakref.ref(scratch), weakref.ref(args[0])]  # and the job's own latent
            raise self.fault()
        return None


@pytest.mark.parametrize("kind", list(FAULTS))
def test_out_of_memory_is_reported_freed_and_the_next_job_runs(rig, kind):
    service = rig.service
    wanted = request(seed=4321, prompt="the next job", batch_size=1)
    reference = service.submit_txt2img(wanted).result(timeout=120)

    hook = FailOnCall(3, FAULTS[kind])
    handle = service.runner.manager.loaded.unet.register_forward_pre_hook(hook, with_kwargs=True)
    try:
        with service.runner.manager.lock:  # both jobs queued before either runs: the queue must go on
            failing = service.submit_txt2img(request(seed=7, width=96, height=64, batch_size=2))
            following = service.submit_txt2img(wanted)
        after = following.result(timeout=120)
    finally:
        handle.remove()

    assert failing.state is JobState.FAILED and isinstance(failing.error, OutOfMemoryError)
    assert isinstance(failing.error, UserError)
    text = failing.error_message
    assert text.startswith("Out of memory at 96x64, batch 2: try a smaller size or batch size"), text
    assert "the next job can run" in text
    if kind != "MemoryError":
        assert (CUDA_TEXT if "torch" in kind else CPU_TEXT)[:60] in text  # the cause, for the log-minded
    # Nothing keeps the failed job's tensors alive: not the job's error, not a traceback.
    gc.collect()
    assert hook.held and all(ref() is None for ref in hook.held)
    assert failing.error.__context__ is None and failing.error.__cause__ is None

    assert following.state is JobState.DONE
    assert len(after.images) == 1 and after.image_seeds == [4321]
    assert pixels(after.images[0]) == pixels(reference.images[0])  # the model was left as it was
    assert service.runner.manager.loaded.checkpoint.stem == "alpha"


def test_out_of_memory_in_a_later_batch_names_the_hires_size(rig):
    service = rig.service
    hook = FailOnCall(6, lambda: torch.OutOfMemoryError(CUDA_TEXT))  # 4 first-pass steps, then the hires pass
    handle = service.runner.manager.loaded.unet.register_forward_pre_hook(hook, with_kwargs=True)
    try:
        job = service.submit_txt2img(request(enable_hr=True, hr_scale=2.0, denoising_strength=0.5, batch_size=3))
        with pytest.raises(OutOfMemoryError, match=r"^Out of memory at 64x64 \(hires fix to 128x128\), batch 3: "):
            job.result(timeout=120)
    finally:
        handle.remove()
    assert service.submit_txt2img(request()).result(timeout=120).images


def test_other_runtime_errors_are_not_called_out_of_memory(rig):
    hook = FailOnCall(1, lambda: RuntimeError("mat1 and mat2 shapes cannot be multiplied (2x3 and 4x5)"))
    handle = rig.service.runner.manager.loaded.unet.register_forward_pre_hook(hook, with_kwargs=True)
    try:
        job = rig.service.submit_txt2img(request())
        with pytest.raises(RuntimeError, match="shapes cannot be multiplied"):
            job.result(timeout=120)
    finally:
        handle.remove()
    assert not isinstance(job.error, OutOfMemoryError)


def test_out_of_memory_while_loading_the_model_says_so(rig):
    service, manager = rig.service, rig.service.runner.manager
    manager.unload()

    def load_fails() -> None:  # the start-up load, as the app passes it in, running out of RAM
        raise MemoryError()

    service.runner.ensure_model = load_fails
    job = service.submit_txt2img(request())
    with pytest.raises(OutOfMemoryError, match=r"^Out of memory while loading the model: close other programs using the memory"):
        job.result(timeout=120)
    service.runner.ensure_model = lambda: manager.switch_checkpoint("alpha")
    assert service.submit_txt2img(request()).result(timeout=120).image_seeds == [11]
