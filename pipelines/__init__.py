"""Method pipelines and shared building blocks. Plain PyTorch/diffusers/numpy: never imports ComfyUI."""
