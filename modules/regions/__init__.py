"""Regional prompts: different prompts in different parts of the picture, read the way the
Regional Prompter extension (hako-mikan/sd-webui-regional-prompter) reads its settings, run in
Attention mode inside Easel's own denoising loop with diffusers attention processors.

- args.py / infotext.py: the extension's 20 API arguments and its infotext keys;
- prompt.py: the prompt cut into parts (BREAK, ADDCOL, ADDROW, ADDBASE, ADDCOMM, AND);
- grammar.py, layout.py, masks.py: where each region is (Matrix ratios, colour-coded masks) and
  the weight maps at any grid;
- conditioning.py: the parts encoded and joined, each part's token range kept;
- attention.py: the cross-attention processors and `regional_attention(unet, plan)`;
- setup.py: `prepare_regions(request, prompt, negative)`, what the engine is handed.
"""
