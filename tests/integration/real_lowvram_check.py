"""``--lowvram`` in the real ComfyUI on models above its 128 MB floor (run in its own process):

    python real_lowvram_check.py <ComfyUI dir> <work dir>

ComfyUI never budgets a model below 128 MB in ``--lowvram``, so the tiny test models always load whole.
Here the pack's seam meets full-size transformers and diffusers models (SD's VAE, a CLIP vision tower;
built on the meta device, so no memory is used): each goes through ``comfy_bridge.make_patcher`` and the
real ``load_models_gpu`` under ``VRAMState.LOW_VRAM`` with a stand-in GPU (the meta device) reporting
``FREE_MB`` free. Prints one JSON line per model: its size, whether ComfyUI loaded it partially, how many
layers it streams, and whether a forward pass runs on the partly loaded model.
"""

from __future__ import annotations

import importlib
import json
import sys
from pathlib import Path

from real_comfy_check import PACK, import_real_comfy, load_pack

FREE_MB = 200


def full_size_models():
    import torch
    from diffusers import AutoencoderKL
    from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection

    with torch.device("meta"):
        vae = AutoencoderKL(block_out_channels=(128, 256, 512, 512), layers_per_block=2, latent_channels=4,
                            down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4)
        clip = CLIPVisionModelWithProjection(CLIPVisionConfig(hidden_size=1024, intermediate_size=4096, num_hidden_layers=24,
                                                              num_attention_heads=16, image_size=224, patch_size=14,
                                                              projection_dim=768))
    return {
        "AutoencoderKL": (vae, lambda m: m.decode(torch.zeros(1, 4, 8, 8, device="meta")).sample),
        "CLIPVisionModelWithProjection": (clip, lambda m: m(torch.zeros(1, 3, 224, 224, device="meta")).image_embeds),
    }


def main() -> None:
    import torch

    comfy_dir, work = Path(sys.argv[1]), Path(sys.argv[2])
    mm = import_real_comfy(comfy_dir, work)
    load_pack(work)
    bridge = importlib.import_module(f"{PACK}.nodes.comfy_bridge")
    meta = torch.device("meta")
    mm.vram_state = mm.VRAMState.LOW_VRAM
    free = FREE_MB * 1024 * 1024
    mm.get_free_memory = lambda dev=None, torch_free_too=False: (free, free) if torch_free_too else free
    for name, (model, forward) in full_size_models().items():
        patcher = bridge.make_patcher(model)
        patcher.load_device = meta
        mm.load_models_gpu([patcher])
        if getattr(model, "model_lowvram", False):
            bridge.place_unstreamed_tensors(model, meta)
        with torch.inference_mode():
            output = forward(model)
        report = {"model": name, "size_mb": patcher.model_size() / 2**20, "partial": bool(model.model_lowvram),
                  "streamed_layers": sum(1 for m in model.modules() if getattr(m, "comfy_cast_weights", False)),
                  "device": str(model.device), "forward_shape": list(output.shape)}
        print("REPORT " + json.dumps(report), flush=True)
        mm.unload_all_models()


if __name__ == "__main__":
    main()
