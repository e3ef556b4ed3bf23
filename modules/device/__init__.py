"""Speed and memory choices for a device, held in one `Optimizations` object the app builds at start.

The manager hands the object to every model it loads (`LoadedModel.optimizations`); the engine
reads it there. Nothing here is global and nothing replaces a library function: each choice is
applied to Easel's own module objects for the length of one sampling pass and undone after it, so
the RAM cache, LoRA patching and checkpoint switches always see the plain modules.

- CPU: bf16 where the CPU has AMX tiles (`cpu_bf16_support`), threads = physical cores.
- Attention: diffusers' default `AttnProcessor2_0` (PyTorch SDPA) is kept; nothing replaces it.
  Attention slicing (low memory) and fused QKV projections swap the processors for one pass.
- channels_last: the UNet's 4-D weights in NHWC for one pass (faster convolutions on GPUs).
- Fast mode: `torch.compile` of the UNet, kept per model; each new latent shape compiles once
  (the job's progress text says so while it does).
- VAE: fp16 decodes that come out NaN/inf are redone in fp32 (the VAE then stays fp32 for that
  model, as A1111's "revert VAE to 32-bit floats" does) and the job says so; decodes and encodes
  above `vae_tile_above_pixels` run tiled (diffusers' tiling on the same module).
- Memory plan: "full", "low" (attention slicing + tiled VAE from a smaller size) or "offload" (low,
  plus model CPU offload: the weights stay in RAM and one component at a time, text encoder, UNet
  or VAE, is moved to the GPU while it runs; `ComponentPlacer`), chosen from free memory at start
  unless `--memory` says otherwise.

Tolerances (what tests/unit/test_performance.py and tests/integration/test_optimizations.py check on
tiny models): channels_last, fused QKV and attention slicing change float rounding only (fp32:
latents within 1e-3, 8-bit pixels within 2 levels). Tiled VAE is NOT a rounding change: each tile
has its own GroupNorm statistics and mid-block attention, so the picture differs (a lot on a
random-weight VAE, subtly on a trained one with 512 px tiles); that is why it engages only above
the memory plan's size, where the whole decode would not fit. The fp32 VAE retry gives the fp32
decode itself.

Parts: `hardware` (the CPU's features and threads, the device and dtype), `memory_plan` (the memory
plan and model CPU offload), `optimizations` (the object and how it is chosen), `unet_pass` (what a
sampling pass does to the UNet), `vae` (safe decodes), `memory` (giving memory back; out-of-memory
errors).
"""
