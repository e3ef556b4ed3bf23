"""The Gradio web UI: the only package (with webui.py) that imports gradio. One file per tab."""
