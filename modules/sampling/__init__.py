"""Sampling: the sampler table (A1111 name -> implementation), sigma schedules, seeds and noise.

- ``types``: the contract (Denoiser, SamplerContext, StepInfo, SamplerFn)
- ``denoiser``: a discrete-time eps / v model as a continuous denoiser (k-diffusion style)
- ``schedules``: A1111's schedule types; ``sampler_table``: A1111's samplers and name lookups
- ``k_samplers`` / ``timestep_samplers``: the algorithms; ``brownian``: SDE noise; ``noise``: seeds
"""
