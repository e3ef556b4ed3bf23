"""Regional prompts: different prompts in different parts of the picture, read the way the
Regional Prompter extension (hako-mikan/sd-webui-regional-prompter) reads its settings, run inside
Easel's own denoising loop: Attention mode with diffusers attention processors, Latent mode as an
AND whose weights are the region maps.

- args.py / infotext.py: the extension's 20 API arguments and its infotext keys;
- prompt.py: the prompt cut into parts (BREAK, ADDCOL, ADDROW, ADDBASE, ADDCOMM, ADDP, AND);
- grammar.py, layout.py, masks.py: where each region is (Matrix ratios, colour-coded masks) and
  the weight maps at any grid;
- prompt_mode.py: Prompt mode, the regions found by the base prompt's attention to a word;
- conditioning.py: the parts encoded and joined, each part's token range kept (or kept apart);
- attention.py: the cross-attention processors and `regional_attention(unet, plan)`;
- latent.py: Latent mode's part weights and each part's LoRAs;
- setup.py: `prepare_regions(request, prompt, negative)`, what the engine is handed.
"""
