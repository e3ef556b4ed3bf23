"""The checkpoint merger (A1111's Checkpoint Merger tab, with an API route of Easel's own):
recipe.py checks what is asked, merge.py streams the merge tensor by tensor into a new
`.safetensors` with A1111's merge metadata. modules/app/merge_jobs.py runs it as a queued job."""
