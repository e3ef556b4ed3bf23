"""The preprocessors that run a network (sd-webui-controlnet's "annotators"), with weight files the
user places in models/ControlNet/annotators: nothing is downloaded. `files` finds and loads a file
(never a pickle executed) and keeps the last networks; `hed` (softedge_hed, softedge_hedsafe) and
`lineart` (lineart_realistic, lineart_coarse) are the networks and their maps."""
