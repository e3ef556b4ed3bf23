"""Model upscalers (ESRGAN family, SwinIR, DAT, HAT, SCUNet... read by spandrel) beside the
built-in PIL ones: the catalog of what is installed (`catalog`), reading model files without
running pickled code (`model_files`), tiled inference (`tiling`) and A1111's upscale loop with a
small model cache (`service`)."""
