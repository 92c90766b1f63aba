"""Tiny stand-ins for the training tests: the factory interfaces of ``pipelines/<method>/training_task.py`` at toy size.

The AnimateAnyone and EasyAnimate networks here are not the real architectures; they only share the
real parameter names that the training rules look at (``reference_unet.up_blocks.3``, ``motion_modules``,
``attn_temporal``, ``transformer_blocks.N.attn1.to_q``, ...) and the forward contracts. The frozen
encoders are the real library classes (diffusers ``AutoencoderKL``, transformers
``CLIPVisionModelWithProjection`` / ``T5EncoderModel``) at toy size.

Factories take the recipe's ``model`` mapping: ``init_seed`` (weights), ``width`` (channels), and for
AnimateAnyone stage 2 optionally ``stage1_dir`` (a stage-1 export to start from).

``easyanimate_v1_config`` is the recipe for the real EasyAnimate v1 code on ``tiny_models.easyanimate``'s release.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

from comfyui_animate_suite.pipelines.animate_anyone.training_task import AnimateAnyoneModels
from comfyui_animate_suite.pipelines.easyanimate.training_task import EasyAnimateModels

CLIP_DIM = 12
TEXT_DIM = 16
TOKENS = 8


def timestep_embedding(timesteps: torch.Tensor, dim: int) -> torch.Tensor:
    half = dim // 2
    freqs = torch.exp(-math.log(10000) * torch.arange(half, dtype=torch.float32, device=timesteps.device) / half)
    angles = timesteps.float()[:, None] * freqs[None]
    return torch.cat([angles.sin(), angles.cos()], dim=1)


class Checkpointable(nn.Module):
    gradient_checkpointing = False

    def enable_gradient_checkpointing(self):
        self.gradient_checkpointing = True

    def run(self, block, *args):
        if self.gradient_checkpointing and self.training and torch.is_grad_enabled():
            return checkpoint(block, *args, use_reentrant=False)
        return block(*args)


# --- frozen encoders ---------------------------------------------------------------------------------


def tiny_vae():
    from diffusers import AutoencoderKL

    return AutoencoderKL(block_out_channels=(8, 8, 8, 8), down_block_types=("DownEncoderBlock2D",) * 4,
                         up_block_types=("UpDecoderBlock2D",) * 4, layers_per_block=1, norm_num_groups=4,
                         latent_channels=4, sample_size=32)


def tiny_clip():
    from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection

    return CLIPVisionModelWithProjection(CLIPVisionConfig(
        hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2, image_size=224,
        patch_size=56, projection_dim=CLIP_DIM))


def tiny_t5():
    from transformers import T5Config, T5EncoderModel

    return T5EncoderModel(T5Config(vocab_size=64, d_model=TEXT_DIM, d_kv=8, d_ff=32, num_layers=2, num_heads=2,
                                   feed_forward_proj="gated-gelu"))


def tiny_tokenize(texts, max_length: int = TOKENS):
    """Words -> ids 2..63 (stable hash), then </s> (1), padded with 0: the shape of a T5 tokenizer's output."""
    ids = torch.zeros(len(texts), max_length, dtype=torch.long)
    mask = torch.zeros(len(texts), max_length, dtype=torch.long)
    for row, text in enumerate(texts):
        words = [2 + sum(ord(c) for c in w) % 62 for w in text.lower().split()][: max_length - 1] + [1]
        ids[row, :len(words)] = torch.tensor(words)
        mask[row, :len(words)] = 1
    return ids, mask


# --- AnimateAnyone -----------------------------------------------------------------------------------


class TinyPoseGuider(nn.Module):
    def __init__(self, out_channels: int):
        super().__init__()
        self.conv_in = nn.Conv2d(3, 8, 3, padding=1)
        self.blocks = nn.ModuleList([nn.Conv2d(8, 8, 3, padding=1, stride=2) for _ in range(3)])
        self.conv_out = nn.Conv2d(8, out_channels, 3, padding=1)

    def forward(self, pose):  # [B,3,F,H,W] -> [B,C,F,H/8,W/8]
        batch, frames = pose.shape[0], pose.shape[2]
        x = F.silu(self.conv_in(pose.transpose(1, 2).flatten(0, 1)))
        for block in self.blocks:
            x = F.silu(block(x))
        return self.conv_out(x).unflatten(0, (batch, frames)).transpose(1, 2)


class TinyReferenceNet(Checkpointable):
    def __init__(self, width: int):
        super().__init__()
        self.conv_in = nn.Conv2d(4, width, 3, padding=1)
        self.time_embedding = nn.Linear(width, width)
        self.clip_proj = nn.Linear(CLIP_DIM, width)
        self.down_blocks = nn.ModuleList([nn.Conv2d(width, width, 3, padding=1)])
        self.up_blocks = nn.ModuleList([nn.Conv2d(width, width, 3, padding=1) for _ in range(4)])

    def forward(self, latents, timesteps, clip_embeds):
        """The "attention bank": every up block's output."""
        h = self.conv_in(latents) + self.time_embedding(timestep_embedding(timesteps, self.conv_in.out_channels))[:, :, None, None]
        h = h + self.clip_proj(clip_embeds[:, 0])[:, :, None, None]
        h = F.silu(self.run(self.down_blocks[0], h))
        bank = []
        for block in self.up_blocks:
            h = F.silu(self.run(block, h))
            bank.append(h)
        return bank


class TinyMotionModule(nn.Module):
    """Mixes each position across frames (named like AnimateDiff's modules)."""

    def __init__(self, width: int):
        super().__init__()
        self.temporal_transformer = nn.Module()
        self.temporal_transformer.proj_in = nn.Linear(width, 4 * width)
        self.temporal_transformer.proj_out = nn.Linear(4 * width, width)
        self.temporal_transformer.register_buffer("pe", torch.linspace(0, 1, 32)[None, :, None].repeat(1, 1, width))

    def forward(self, h):  # [B,C,F,h,w]
        frames = h.shape[2]
        x = self.temporal_transformer.proj_in(h.permute(0, 3, 4, 2, 1) + self.temporal_transformer.pe[:, :frames])
        mixed = x + x.mean(dim=3, keepdim=True)
        return h + self.temporal_transformer.proj_out(F.silu(mixed)).permute(0, 4, 3, 1, 2)


class TinyDownBlock(nn.Module):
    def __init__(self, width: int, motion: bool):
        super().__init__()
        self.resnets = nn.ModuleList([nn.Conv2d(width, width, 3, padding=1)])
        if motion:
            self.motion_modules = nn.ModuleList([TinyMotionModule(width)])


class TinyDenoisingUNet(Checkpointable):
    def __init__(self, width: int, motion: bool):
        super().__init__()
        self.conv_in = nn.Conv2d(4, width, 3, padding=1)
        self.time_embedding = nn.Linear(width, width)
        self.clip_proj = nn.Linear(CLIP_DIM, width)
        self.reference_proj = nn.Conv2d(4 * width, width, 1)
        self.down_blocks = nn.ModuleList([TinyDownBlock(width, motion), TinyDownBlock(width, motion)])
        self.conv_out = nn.Conv2d(width, 4, 3, padding=1)
        # Per-timestep scales of the features and of the input: what a v/eps target needs to be learnable.
        self.time_film = nn.Linear(width, width + 4)

    def forward(self, noisy, timesteps, pose_features, clip_embeds, bank):
        batch, _, frames = noisy.shape[:3]
        flat = noisy.transpose(1, 2).flatten(0, 1)
        h = self.conv_in(flat).unflatten(0, (batch, frames)).transpose(1, 2) + pose_features
        t_emb = self.time_embedding(timestep_embedding(timesteps, h.shape[1]))
        h = h + t_emb[:, :, None, None, None]
        h = h + self.clip_proj(clip_embeds[:, 0])[:, :, None, None, None]
        if bank is not None:
            h = h + self.reference_proj(torch.cat(bank, dim=1))[:, :, None]
        for block in self.down_blocks:
            h = self._block(block, h)
        film = self.time_film(F.silu(t_emb))[:, :, None, None, None]
        h = h * (1 + film[:, :-4])
        out = self.conv_out(F.silu(h.transpose(1, 2).flatten(0, 1)))
        return out.unflatten(0, (batch, frames)).transpose(1, 2) + film[:, -4:] * noisy

    def _block(self, block, h):
        batch, frames = h.shape[0], h.shape[2]
        flat = h.transpose(1, 2).flatten(0, 1)
        h = h + F.silu(self.run(block.resnets[0], flat)).unflatten(0, (batch, frames)).transpose(1, 2)
        if hasattr(block, "motion_modules"):
            h = block.motion_modules[0](h)
        return h


class TinyAnimateAnyoneNet(nn.Module):
    def __init__(self, width: int, motion: bool):
        super().__init__()
        self.reference_unet = TinyReferenceNet(width)
        self.denoising_unet = TinyDenoisingUNet(width, motion)
        self.pose_guider = TinyPoseGuider(width)

    def forward(self, noisy_latents, timesteps, reference_latents, clip_embeds, pose):
        pose_features = self.pose_guider(pose)
        bank = None
        if reference_latents is not None:
            bank = self.reference_unet(reference_latents, torch.zeros_like(timesteps), clip_embeds)
        return self.denoising_unet(noisy_latents, timesteps, pose_features, clip_embeds, bank)


def animate_anyone_validation(net, request):
    """A cheap stand-in sampler: the prediction for one fixed input, shown as frames."""
    generator = torch.Generator().manual_seed(request.seed)
    noisy = torch.randn(1, 4, 2, 4, 4, generator=generator).to(request.device)
    pose = torch.rand(1, 3, 2, 32, 32, generator=generator).to(request.device)
    clip = torch.zeros(1, 1, CLIP_DIM, device=request.device)
    out = net(noisy, torch.tensor([500], device=request.device), None, clip, pose)[0, :3]
    frames = ((out.float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).permute(1, 2, 3, 0).cpu().numpy()
    return {"prediction": np.repeat(np.repeat(frames, 4, axis=1), 4, axis=2)}


def build_animate_anyone(model_config: dict, stage: int) -> AnimateAnyoneModels:
    torch.manual_seed(int(model_config.get("init_seed", 0)))
    net = TinyAnimateAnyoneNet(int(model_config.get("width", 16)), motion=stage == 2)
    vae, clip = tiny_vae(), tiny_clip()
    if model_config.get("stage1_dir"):
        load_stage1_export(net, Path(model_config["stage1_dir"]))
    return AnimateAnyoneModels(net, vae, clip, validation_sampler=animate_anyone_validation)


def load_stage1_export(net: TinyAnimateAnyoneNet, folder: Path) -> None:
    """What the real loader does with the released stage-1 files: strict, every key lands."""
    from comfyui_animate_suite.core.checkpoints import load_into_module, load_state_dict

    motion = [k for k in net.denoising_unet.state_dict() if "motion_module" in k]
    load_into_module(net.denoising_unet, load_state_dict(folder / "denoising_unet.pth"), folder, "denoising UNet",
                     ignore_missing=motion)
    load_into_module(net.reference_unet, load_state_dict(folder / "reference_unet.pth"), folder, "ReferenceNet")
    load_into_module(net.pose_guider, load_state_dict(folder / "pose_guider.pth"), folder, "PoseGuider")


# --- EasyAnimate -------------------------------------------------------------------------------------


class TinyAttention(nn.Module):
    def __init__(self, dim: int, context_dim: int | None = None, bias: bool = True, heads: int = 2):
        super().__init__()
        context_dim = context_dim or dim
        self.heads = heads
        self.to_q = nn.Linear(dim, dim, bias=bias)
        self.to_k = nn.Linear(context_dim, dim, bias=bias)
        self.to_v = nn.Linear(context_dim, dim, bias=bias)
        self.to_out = nn.ModuleList([nn.Linear(dim, dim), nn.Dropout(0.0)])

    def forward(self, x, context=None, mask=None):
        context = x if context is None else context
        q, k, v = (t.unflatten(-1, (self.heads, -1)).transpose(1, 2)
                   for t in (self.to_q(x), self.to_k(context), self.to_v(context)))
        bias = None if mask is None else (1 - mask[:, None, None, :].to(q.dtype)) * -10000.0
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=bias).transpose(1, 2).flatten(2)
        return self.to_out[1](self.to_out[0](out))


class TinyFeedForward(nn.Module):
    def __init__(self, dim: int):
        super().__init__()
        project = nn.Module()
        project.proj = nn.Linear(dim, 2 * dim)
        self.net = nn.ModuleList([project, nn.Dropout(0.0), nn.Linear(2 * dim, dim)])

    def forward(self, x):
        return self.net[2](F.gelu(self.net[0].proj(x), approximate="tanh"))


class TinyTemporalModule(nn.Module):
    """Named like EasyAnimate's ``attn_temporal`` (``temporal_transformer`` ... ``pos_encoder.pe``)."""

    def __init__(self, dim: int, frames_max: int = 16):
        super().__init__()
        tt = nn.Module()
        tt.norm = nn.GroupNorm(4, dim)
        tt.proj_in = nn.Linear(dim, dim)
        block = nn.Module()
        block.attention_blocks = nn.ModuleList([TinyAttention(dim, bias=False) for _ in range(2)])
        for attention in block.attention_blocks:
            attention.pos_encoder = nn.Module()
            attention.pos_encoder.register_buffer("pe", torch.linspace(-1, 1, frames_max)[None, :, None].repeat(1, 1, dim))
        block.norms = nn.ModuleList([nn.LayerNorm(dim) for _ in range(2)])
        block.ff = TinyFeedForward(dim)
        block.ff_norm = nn.LayerNorm(dim)
        tt.transformer_blocks = nn.ModuleList([block])
        tt.proj_out = nn.Linear(dim, dim)
        self.temporal_transformer = tt

    def forward(self, x, frames: int):  # [B, F*T, C] -> same
        tt = self.temporal_transformer
        batch, _, dim = x.shape
        h = tt.norm(x.transpose(1, 2)).transpose(1, 2)
        h = tt.proj_in(h).unflatten(1, (frames, -1)).transpose(1, 2).flatten(0, 1)  # [(B T), F, C]
        block = tt.transformer_blocks[0]
        for attention, norm in zip(block.attention_blocks, block.norms):
            h = attention(norm(h) + attention.pos_encoder.pe[:, :frames]) + h
        h = block.ff(block.ff_norm(h)) + h
        h = h.unflatten(0, (batch, -1)).transpose(1, 2).flatten(1, 2)
        return x + tt.proj_out(h)


class TinyDiTBlock(nn.Module):
    def __init__(self, dim: int):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn1 = TinyAttention(dim)
        self.attn_temporal = TinyTemporalModule(dim)
        self.attn2 = TinyAttention(dim, dim)
        self.norm2 = nn.LayerNorm(dim)
        self.ff = TinyFeedForward(dim)

    def forward(self, x, t_emb, context, mask, frames: int):
        batch, _, dim = x.shape
        spatial = (self.norm1(x) + t_emb[:, None]).unflatten(1, (frames, -1)).flatten(0, 1)
        x = x + self.attn1(spatial).unflatten(0, (batch, frames)).flatten(1, 2)
        x = self.attn_temporal(x, frames)
        x = x + self.attn2(x, context, mask)
        return x + self.ff(self.norm2(x))


class TinyEasyAnimateTransformer(Checkpointable):
    """Latents [B,4,F,h,w] -> [B,8,F,h,w] (eps + learned variance), PixArt-like names."""

    def __init__(self, dim: int = 32, layers: int = 2):
        super().__init__()
        self.pos_embed = nn.Module()
        self.pos_embed.proj = nn.Conv2d(4, dim, 2, stride=2)
        self.adaln_single = nn.Module()
        self.adaln_single.linear = nn.Linear(dim, dim)
        self.caption_projection = nn.Module()
        self.caption_projection.linear_1 = nn.Linear(TEXT_DIM, dim)
        self.caption_projection.linear_2 = nn.Linear(dim, dim)
        self.transformer_blocks = nn.ModuleList([TinyDiTBlock(dim) for _ in range(layers)])
        self.proj_out = nn.Linear(dim, 2 * 2 * 8)
        self.time_film = nn.Linear(dim, dim + 8)  # per-timestep feature scale and input skip (see the UNet above)

    def forward(self, hidden_states, timestep=None, encoder_hidden_states=None, encoder_attention_mask=None):
        batch, _, frames, height, width = hidden_states.shape
        x = self.pos_embed.proj(hidden_states.transpose(1, 2).flatten(0, 1))  # [(B F), C, h/2, w/2]
        grid = x.shape[-2:]
        x = x.flatten(2).transpose(1, 2).unflatten(0, (batch, frames)).flatten(1, 2)  # [B, F*T, C]
        t_emb = self.adaln_single.linear(timestep_embedding(timestep, x.shape[-1]))
        context = self.caption_projection.linear_2(F.gelu(self.caption_projection.linear_1(encoder_hidden_states.float())))
        for block in self.transformer_blocks:
            x = self.run(block, x, t_emb, context, encoder_attention_mask, frames)
        film = self.time_film(F.silu(t_emb))
        out = self.proj_out(x * (1 + film[:, None, :-8])).reshape(batch, frames, grid[0], grid[1], 2, 2, 8)
        out = out.permute(0, 6, 1, 2, 4, 3, 5).reshape(batch, 8, frames, height, width)
        return (out + film[:, -8:, None, None, None] * hidden_states.repeat(1, 2, 1, 1, 1),)


def easyanimate_validation(net, request):
    generator = torch.Generator().manual_seed(request.seed)
    ids, mask = tiny_tokenize(list(request.options.get("prompts", ["a test"]))[:1], TOKENS)
    noisy = torch.randn(1, 4, 2, 4, 4, generator=generator).to(request.device)
    embeds = torch.zeros(1, TOKENS, TEXT_DIM, device=request.device)
    out = net(noisy, torch.tensor([500], device=request.device), mask.to(request.device), encoder_hidden_states=embeds,
              input_ids=ids.to(request.device))[0, :3]
    frames = ((out.float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).permute(1, 2, 3, 0).cpu().numpy()
    return {"prediction": frames}


def build_easyanimate(model_config: dict) -> EasyAnimateModels:
    torch.manual_seed(int(model_config.get("init_seed", 0)))
    transformer = TinyEasyAnimateTransformer(int(model_config.get("width", 32)))
    return EasyAnimateModels(transformer, tiny_vae(), tiny_t5(), tiny_tokenize, validation_sampler=easyanimate_validation)


# --- synthetic datasets --------------------------------------------------------------------------------


def moving_square(frames: int, size: int, color, phase: int = 0) -> np.ndarray:
    video = np.full((frames, size, size, 3), 24, np.uint8)
    for i in range(frames):
        x = (phase + 2 * i) % (size - 8)
        video[i, 8:16, x:x + 8] = color
    return video


def pose_of(video: np.ndarray) -> np.ndarray:
    """A "pose video": a white marker where the square is, on black."""
    pose = np.zeros_like(video)
    pose[(video > 100).any(axis=-1)] = 255
    return pose


def write_pose_dataset(folder: Path, count: int = 2, frames: int = 12, size: int = 32) -> Path:
    from comfyui_animate_suite.core.video import write_video

    folder.mkdir(parents=True, exist_ok=True)
    entries = []
    for index in range(count):
        video = moving_square(frames, size, (200, 60 + 100 * index, 40), phase=3 * index)
        video_path, pose_path = folder / f"dance{index}.mp4", folder / f"dance{index}_kps.mp4"
        write_video(video, video_path, fps=8, quality=95)
        write_video(pose_of(video), pose_path, fps=8, quality=95)
        entries.append({"video_path": str(video_path), "kps_path": str(pose_path)})
    meta = folder / "meta.json"
    meta.write_text(json.dumps(entries))
    return meta


def write_media_dataset(folder: Path, frames: int = 8, size: int = 32, with_image: bool = False) -> Path:
    from PIL import Image

    from comfyui_animate_suite.core.video import write_video

    (folder / "videos").mkdir(parents=True, exist_ok=True)
    entries = []
    for index, text in enumerate(["a red square slides right", "a green square slides left"]):
        video = moving_square(frames, size, (220, 40, 40) if index == 0 else (40, 220, 40), phase=5 * index)
        write_video(video, folder / "videos" / f"{index:08d}.mp4", fps=8, quality=95)
        entries.append({"file_path": f"videos/{index:08d}.mp4", "text": text, "type": "video"})
    if with_image:
        Image.fromarray(moving_square(1, size, (40, 40, 220))[0]).save(folder / "still.png")
        entries.append({"file_path": "still.png", "text": "a blue square", "type": "image"})
    meta = folder / "metadata.json"
    meta.write_text(json.dumps(entries))
    return meta


# --- recipes -------------------------------------------------------------------------------------------


def animate_anyone_config(data_dir: Path, output_dir: Path, stage: int = 1, **solver) -> dict:
    settings = dict(max_train_steps=4, learning_rate=3e-3, lr_scheduler="constant", adam_weight_decay=0.0,
                    mixed_precision="no")
    settings.update(solver)
    return {
        "method": "animate-anyone", "stage": stage, "seed": 7, "output_dir": str(output_dir),
        "model": {"factory": "tiny_models.training:build_animate_anyone", "width": 16},
        "data": {"meta_paths": [str(data_dir / "meta.json")], "width": 32, "height": 32, "batch_size": 2,
                 "num_workers": 0, "sample_margin": 3, "n_sample_frames": 4, "sample_rate": 2},
        "noise": {"condition_drop_ratio": 0.1},
        "solver": settings,
        "checkpoint": {"every_steps": 1000},
    }


def easyanimate_config(data_dir: Path, output_dir: Path, mode: str = "lora", **solver) -> dict:
    settings = dict(max_train_steps=4, learning_rate=3e-3, lr_scheduler="constant", adam_weight_decay=0.0,
                    mixed_precision="no")
    settings.update(solver)
    return {
        "method": "easyanimate", "mode": mode, "seed": 11, "output_dir": str(output_dir),
        "model": {"factory": "tiny_models.training:build_easyanimate"},
        "data": {"meta_path": str(data_dir / "metadata.json"), "root": str(data_dir), "batch_size": 2,
                 "num_workers": 0, "video_size": 32, "image_size": 32, "sample_stride": 1, "sample_n_frames": 4,
                 "tokenizer_max_length": TOKENS, "text_drop_ratio": 0.1},
        "lora": {"rank": 4, "alpha": 2.0},
        "solver": settings,
        "checkpoint": {"every_steps": 1000},
    }


def easyanimate_v1_config(v1, data_dir: Path, output_dir: Path, mode: str = "lora", with_motion_module: bool = True,
                          size: int = 32, tokens: int = 16, **solver) -> dict:
    """A recipe for the real EasyAnimate v1 code (the pack's default factory) on a tiny v1 release
    (``tiny_models.easyanimate.write_v1``); sizes are multiples of 32 as v1 needs."""
    settings = dict(max_train_steps=3, learning_rate=1e-2, lr_scheduler="constant", adam_weight_decay=0.0,
                    mixed_precision="no")
    settings.update(solver)
    return {
        "method": "easyanimate", "mode": mode, "seed": 3, "output_dir": str(output_dir),
        "model": {"pixart_dir": str(v1.base), "motion_module": str(v1.motion_module) if with_motion_module else None},
        "data": {"meta_path": str(data_dir / "metadata.json"), "root": str(data_dir), "batch_size": 2,
                 "num_workers": 0, "video_size": size, "image_size": size, "sample_stride": 1, "sample_n_frames": 4,
                 "tokenizer_max_length": tokens, "text_drop_ratio": 0.0},
        "lora": {"rank": 4, "alpha": 4.0, "train_text_encoder": True},
        "solver": settings,
        "checkpoint": {"every_steps": 1000},
    }


def animate_anyone_real_config(sources, data_dir: Path, output_dir: Path, stage: int = 1, from_release: bool = False,
                               size: int = 64, **solver) -> dict:
    """A recipe for the real AnimateAnyone code (the pack's default factory) on the tiny sources of
    ``tiny_models.animate_anyone.write_training_sources``: stage 1 from the SD UNet folder (or the tiny
    release's .pth files), stage 2 from the tiny release plus the AnimateDiff-layout motion module."""
    settings = dict(max_train_steps=3, learning_rate=1e-3, lr_scheduler="constant", adam_weight_decay=0.0,
                    mixed_precision="no")
    settings.update(solver)
    model = {"vae": str(sources.release.vae), "image_encoder": str(sources.release.image_encoder),
             "config_dir": str(sources.release_dir)}
    if stage == 1 and not from_release:
        model.update(base_unet=str(sources.base_unet), controlnet_openpose=str(sources.controlnet))
    else:
        model["stage1_dir"] = str(sources.release_dir)
    if stage == 2:
        model["motion_module_init"] = str(sources.motion_module)
    return {
        "method": "animate-anyone", "stage": stage, "seed": 5, "output_dir": str(output_dir), "model": model,
        "data": {"meta_paths": [str(data_dir / "meta.json")], "width": size, "height": size, "batch_size": 2,
                 "num_workers": 0, "sample_margin": 3, "n_sample_frames": 4, "sample_rate": 2, "clip_size": 224},
        "noise": {"condition_drop_ratio": 0.1},
        "solver": settings,
        "checkpoint": {"every_steps": 1000},
    }


def build_marker_renderer(options: dict):
    """A stand-in pose renderer for ``prepare``: marks bright pixels (the DWPose renderer plugs in here)."""
    return pose_of


def build_broken_renderer(options: dict):
    return lambda frames: frames[:, ::2]
