"""AnimateAnyone's two UNets, built from an SD1.5-style 2D UNet config.

- ReferenceNet: diffusers' ``UNet2DConditionModel`` without its output head (the released
  ``reference_unet.pth`` has no ``conv_norm_out``/``conv_out``); only the inputs of its spatial
  self-attention layers are used (see ``reference_attention.py``).
- Denoising UNet: SD1.5 "inflated" to video as the reference does it with ``use_inflated_groupnorm``:
  every 2D layer (resnets, spatial transformers, up/down sampling) runs per frame, so frames are folded
  into the batch and diffusers' own 2D blocks are used unchanged; after each resnet + transformer pair
  (and in the mid block) an AnimateDiff-v2 motion module mixes the frames. Key names equal the
  reference's ``UNet3DConditionModel``: the SD1.5 keys plus ``*.motion_modules.N.*``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from ..motion_module import MotionModule, MotionSettings, parse_motion_settings

CROSS_ATTENTION_DOWN = ("CrossAttnDownBlock2D", "CrossAttnDownBlock3D")
PLAIN_DOWN = ("DownBlock2D", "DownBlock3D")
CROSS_ATTENTION_UP = ("CrossAttnUpBlock2D", "CrossAttnUpBlock3D")
PLAIN_UP = ("UpBlock2D", "UpBlock3D")


@dataclass(frozen=True)
class UNetShape:
    """The fields of a diffusers SD1.5 UNet ``config.json`` that shape both UNets."""

    in_channels: int = 4
    out_channels: int = 4
    block_out_channels: tuple[int, ...] = (320, 640, 1280, 1280)
    layers_per_block: int = 2
    norm_num_groups: int = 32
    norm_eps: float = 1e-5
    cross_attention_dim: int = 768
    attention_heads: tuple[int, ...] = (8, 8, 8, 8)
    down_cross_attention: tuple[bool, ...] = (True, True, True, False)
    up_cross_attention: tuple[bool, ...] = (False, True, True, True)
    flip_sin_to_cos: bool = True
    freq_shift: int = 0
    downsample_padding: int = 1
    mid_block_scale_factor: float = 1.0

    @classmethod
    def from_config(cls, config: dict) -> "UNetShape":
        unsupported = {
            "use_linear_projection": False, "only_cross_attention": False, "upcast_attention": False,
            "dual_cross_attention": False, "class_embed_type": None, "num_class_embeds": None,
            "resnet_time_scale_shift": "default", "center_input_sample": False, "act_fn": "silu",
            "mid_block_type": "UNetMidBlock2DCrossAttn", "addition_embed_type": None,
        }
        for key, default in unsupported.items():
            value = config.get(key, default)
            if key == "mid_block_type" and value in ("UNetMidBlock2DCrossAttn", "UNetMidBlock3DCrossAttn"):
                continue
            if value != default:
                raise ValueError(f"UNet config {key}={value!r} is not supported (AnimateAnyone uses {default!r})")
        blocks = len(config.get("block_out_channels", cls.block_out_channels))
        heads = config.get("attention_head_dim", 8)  # SD1.5 stores the head count under this name
        heads = tuple(heads) if isinstance(heads, (list, tuple)) else (int(heads),) * blocks
        down_types = tuple(config.get("down_block_types", ("CrossAttnDownBlock2D",) * 3 + ("DownBlock2D",)))
        up_types = tuple(config.get("up_block_types", ("UpBlock2D",) + ("CrossAttnUpBlock2D",) * 3))
        for name in down_types + up_types:
            if name not in CROSS_ATTENTION_DOWN + PLAIN_DOWN + CROSS_ATTENTION_UP + PLAIN_UP:
                raise ValueError(f"UNet block type {name!r} is not supported")
        return cls(
            in_channels=int(config.get("in_channels", 4)),
            out_channels=int(config.get("out_channels", 4)),
            block_out_channels=tuple(int(c) for c in config.get("block_out_channels", cls.block_out_channels)),
            layers_per_block=int(config.get("layers_per_block", 2)),
            norm_num_groups=int(config.get("norm_num_groups", 32)),
            norm_eps=float(config.get("norm_eps", 1e-5)),
            cross_attention_dim=int(config.get("cross_attention_dim", 768)),
            attention_heads=heads,
            down_cross_attention=tuple(name in CROSS_ATTENTION_DOWN for name in down_types),
            up_cross_attention=tuple(name in CROSS_ATTENTION_UP for name in up_types),
            flip_sin_to_cos=bool(config.get("flip_sin_to_cos", True)),
            freq_shift=int(config.get("freq_shift", 0)),
            downsample_padding=int(config.get("downsample_padding", 1)),
            mid_block_scale_factor=float(config.get("mid_block_scale_factor", 1.0)),
        )


@dataclass(frozen=True)
class MotionLayout:
    """Where motion modules sit (``unet_additional_kwargs`` of the reference)."""

    resolutions: tuple[int, ...] = (1, 2, 4, 8)
    mid_block: bool = True
    decoder_only: bool = False
    settings: MotionSettings = MotionSettings()

    @classmethod
    def from_kwargs(cls, kwargs: dict) -> "MotionLayout":
        if not kwargs.get("use_motion_module", True):
            raise ValueError("unet_additional_kwargs has use_motion_module=false; AnimateAnyone's video UNet needs it")
        if not kwargs.get("use_inflated_groupnorm", False):
            raise ValueError("only use_inflated_groupnorm=true (per-frame group norm, inference_v2.yaml) is supported")
        for key in ("unet_use_cross_frame_attention", "unet_use_temporal_attention"):
            if kwargs.get(key):
                raise ValueError(f"{key}=true is not supported (the released weights use false)")
        if kwargs.get("motion_module_type", "Vanilla") != "Vanilla":
            raise ValueError(f"motion module type {kwargs.get('motion_module_type')!r} is not supported")
        return cls(
            resolutions=tuple(int(r) for r in kwargs.get("motion_module_resolutions", (1, 2, 4, 8))),
            mid_block=bool(kwargs.get("motion_module_mid_block", False)),
            decoder_only=bool(kwargs.get("motion_module_decoder_only", False)),
            settings=_motion_settings(kwargs.get("motion_module_kwargs", {})),
        )


def _motion_settings(options: dict) -> MotionSettings:
    """The reference's ``motion_module_kwargs``: AnimateDiff v2's (two temporal self-attentions, frame positions)."""
    settings, problems = parse_motion_settings(options, default_max_len=32, only_animatediff_options=True,
                                               block_count=2, position_encoding_required=True)
    if problems:
        raise ValueError(f"motion modules with {', '.join(problems)} are not supported "
                         "(only AnimateDiff v2's: Temporal_Self x2 with temporal position encoding)")
    return settings


def build_reference_net(config: dict) -> nn.Module:
    """diffusers' ``UNet2DConditionModel`` for ``config`` with the output head removed."""
    from diffusers import UNet2DConditionModel

    UNetShape.from_config(config)  # refuses configs the denoising UNet could not mirror
    known = {k: v for k, v in config.items() if not k.startswith("_")}
    model = UNet2DConditionModel(**known)
    model.conv_norm_out = None
    model.conv_act = None
    model.conv_out = nn.Identity()
    return model


def _resnet(shape: UNetShape, in_channels: int, out_channels: int, temb_channels: int, output_scale: float = 1.0):
    from diffusers.models.resnet import ResnetBlock2D

    return ResnetBlock2D(
        in_channels=in_channels, out_channels=out_channels, temb_channels=temb_channels,
        eps=shape.norm_eps, groups=shape.norm_num_groups, non_linearity="silu", output_scale_factor=output_scale,
    )


def _transformer(shape: UNetShape, channels: int, heads: int):
    from diffusers.models.transformers.transformer_2d import Transformer2DModel

    return Transformer2DModel(
        num_attention_heads=heads, attention_head_dim=channels // heads, in_channels=channels, num_layers=1,
        cross_attention_dim=shape.cross_attention_dim, norm_num_groups=shape.norm_num_groups,
    )


def _motion_modules(channels: int, count: int, settings: MotionSettings | None) -> nn.ModuleList | None:
    if settings is None:
        return None
    return nn.ModuleList([MotionModule(channels, settings) for _ in range(count)])


class VideoStep:
    """What every block of the denoising UNet needs besides its input."""

    def __init__(self, temb: torch.Tensor, context: torch.Tensor, frames: int):
        self.temb = temb  # (batch * frames, time_dim)
        self.context = context  # (batch * frames, tokens, dim)
        self.frames = frames


class _Block(nn.Module):
    """resnet -> spatial transformer (optional) -> motion module (optional), ``layers`` times."""

    resnets: nn.ModuleList
    attentions: nn.ModuleList | None
    motion_modules: nn.ModuleList | None

    def layer(self, index: int, x: torch.Tensor, step: VideoStep) -> torch.Tensor:
        x = self.resnets[index](x, step.temb)
        if self.attentions is not None:
            x = self.attentions[index](x, encoder_hidden_states=step.context, return_dict=False)[0]
        if self.motion_modules is not None:
            x = self.motion_modules[index](x, step.frames)
        return x


class DownBlock3D(_Block):
    def __init__(self, shape, in_channels, out_channels, temb_channels, heads, cross_attention, motion, add_downsample):
        super().__init__()
        from diffusers.models.resnet import Downsample2D

        layers = shape.layers_per_block
        self.resnets = nn.ModuleList(
            [_resnet(shape, in_channels if i == 0 else out_channels, out_channels, temb_channels) for i in range(layers)]
        )
        self.attentions = (
            nn.ModuleList([_transformer(shape, out_channels, heads) for _ in range(layers)]) if cross_attention else None
        )
        self.motion_modules = _motion_modules(out_channels, layers, motion)
        self.downsamplers = (
            nn.ModuleList([Downsample2D(out_channels, use_conv=True, out_channels=out_channels,
                                        padding=shape.downsample_padding, name="op")])
            if add_downsample else None
        )

    def forward(self, x: torch.Tensor, step: VideoStep) -> tuple[torch.Tensor, list[torch.Tensor]]:
        skips = []
        for index in range(len(self.resnets)):
            x = self.layer(index, x, step)
            skips.append(x)
        if self.downsamplers is not None:
            x = self.downsamplers[0](x)
            skips.append(x)
        return x, skips


class MidBlock3D(nn.Module):
    def __init__(self, shape: UNetShape, channels: int, temb_channels: int, heads: int, motion: MotionSettings | None):
        super().__init__()
        scale = shape.mid_block_scale_factor
        self.resnets = nn.ModuleList([_resnet(shape, channels, channels, temb_channels, scale) for _ in range(2)])
        self.attentions = nn.ModuleList([_transformer(shape, channels, heads)])
        self.motion_modules = _motion_modules(channels, 1, motion)

    def forward(self, x: torch.Tensor, step: VideoStep) -> torch.Tensor:
        x = self.resnets[0](x, step.temb)
        x = self.attentions[0](x, encoder_hidden_states=step.context, return_dict=False)[0]
        if self.motion_modules is not None:
            x = self.motion_modules[0](x, step.frames)
        return self.resnets[1](x, step.temb)


class UpBlock3D(_Block):
    def __init__(self, shape, in_channels, prev_channels, out_channels, temb_channels, heads, cross_attention,
                 motion, add_upsample):
        super().__init__()
        from diffusers.models.resnet import Upsample2D

        layers = shape.layers_per_block + 1
        resnets = []
        for i in range(layers):
            skip_channels = in_channels if i == layers - 1 else out_channels
            resnet_in = prev_channels if i == 0 else out_channels
            resnets.append(_resnet(shape, resnet_in + skip_channels, out_channels, temb_channels))
        self.resnets = nn.ModuleList(resnets)
        self.attentions = (
            nn.ModuleList([_transformer(shape, out_channels, heads) for _ in range(layers)]) if cross_attention else None
        )
        self.motion_modules = _motion_modules(out_channels, layers, motion)
        self.upsamplers = (
            nn.ModuleList([Upsample2D(out_channels, use_conv=True, out_channels=out_channels)]) if add_upsample else None
        )

    def forward(self, x: torch.Tensor, skips: list[torch.Tensor], step: VideoStep, upsample_size=None) -> torch.Tensor:
        for index in range(len(self.resnets)):
            x = torch.cat([x, skips.pop()], dim=1)
            x = self.layer(index, x, step)
        if self.upsamplers is not None:
            x = self.upsamplers[0](x, upsample_size)
        return x


class DenoisingUNet3D(nn.Module):
    """The video UNet: ``forward(latents (B,C,F,H,W), timestep, image_embeds (B,N,D), pose_features)``."""

    def __init__(self, shape: UNetShape, motion: MotionLayout):
        super().__init__()
        from diffusers.models.embeddings import TimestepEmbedding, Timesteps

        channels = shape.block_out_channels
        time_dim = channels[0] * 4
        self.conv_in = nn.Conv2d(shape.in_channels, channels[0], kernel_size=3, padding=1)
        self.time_proj = Timesteps(channels[0], shape.flip_sin_to_cos, shape.freq_shift)
        self.time_embedding = TimestepEmbedding(channels[0], time_dim)

        self.down_blocks = nn.ModuleList()
        output = channels[0]
        for i, cross_attention in enumerate(shape.down_cross_attention):
            block_in, output = output, channels[i]
            with_motion = 2**i in motion.resolutions and not motion.decoder_only
            self.down_blocks.append(DownBlock3D(
                shape, block_in, output, time_dim, shape.attention_heads[i], cross_attention,
                motion.settings if with_motion else None, add_downsample=i < len(channels) - 1,
            ))
        self.up_blocks = nn.ModuleList()
        reversed_channels = list(reversed(channels))
        reversed_heads = list(reversed(shape.attention_heads))
        output = reversed_channels[0]
        for i, cross_attention in enumerate(shape.up_cross_attention):
            prev, output = output, reversed_channels[i]
            block_in = reversed_channels[min(i + 1, len(channels) - 1)]
            with_motion = 2 ** (len(channels) - 1 - i) in motion.resolutions
            self.up_blocks.append(UpBlock3D(
                shape, block_in, prev, output, time_dim, reversed_heads[i], cross_attention,
                motion.settings if with_motion else None, add_upsample=i < len(channels) - 1,
            ))
        self.mid_block = MidBlock3D(shape, channels[-1], time_dim, shape.attention_heads[-1],
                                    motion.settings if motion.mid_block else None)
        self.conv_norm_out = nn.GroupNorm(shape.norm_num_groups, channels[0], eps=shape.norm_eps)
        self.conv_act = nn.SiLU()
        self.conv_out = nn.Conv2d(channels[0], shape.out_channels, kernel_size=3, padding=1)

    gradient_checkpointing = False

    def enable_gradient_checkpointing(self) -> None:
        """Recompute each block's activations in the backward pass (training) instead of keeping them."""
        self.gradient_checkpointing = True

    def _run(self, block_call, *tensors):
        if self.gradient_checkpointing and self.training and torch.is_grad_enabled():
            from torch.utils.checkpoint import checkpoint

            return checkpoint(block_call, *tensors, use_reentrant=False)
        return block_call(*tensors)

    @property
    def max_frames(self) -> int:
        """The most frames one window may hold (the motion modules' position table)."""
        tables = [m.pe.shape[1] for name, m in self.named_modules() if name.endswith("pos_encoder")]
        return min(tables) if tables else 10**9

    def forward(self, sample: torch.Tensor, timestep: torch.Tensor, encoder_hidden_states: torch.Tensor,
                pose_features: torch.Tensor | None = None) -> torch.Tensor:
        batch, frames = sample.shape[0], sample.shape[2]
        x = fold_frames(sample)
        step = VideoStep(self._time_embedding(timestep, batch, x).repeat_interleave(frames, dim=0),
                         encoder_hidden_states.repeat_interleave(frames, dim=0), frames)

        x = self.conv_in(x)
        if pose_features is not None:
            x = x + fold_frames(pose_features)
        skips = [x]
        for block in self.down_blocks:
            x, block_skips = self._run(lambda h, b=block: b(h, step), x)
            skips += block_skips
        x = self._run(lambda h: self.mid_block(h, step), x)
        for block in self.up_blocks:
            # Latent sizes that are not multiples of 8 (e.g. 784/8 = 98) need explicit upsample sizes.
            block_skips = skips[-len(block.resnets):]
            del skips[-len(block.resnets):]
            upsample_size = skips[-1].shape[2:] if skips else None
            # The block pops its skips, so a recomputation gets its own list.
            x = self._run(lambda h, *s, b=block, size=upsample_size: b(h, list(s), step, size), x, *block_skips)
        x = self.conv_out(self.conv_act(self.conv_norm_out(x)))
        return unfold_frames(x, frames)

    def _time_embedding(self, timestep, batch: int, like: torch.Tensor) -> torch.Tensor:
        # The input's device, not a weight's: with partial loading weights may sit elsewhere.
        timesteps = torch.as_tensor(timestep, device=like.device)
        timesteps = timesteps.reshape(-1).expand(batch) if timesteps.numel() == 1 else timesteps
        return self.time_embedding(self.time_proj(timesteps).to(like.dtype))


def fold_frames(x: torch.Tensor) -> torch.Tensor:
    """``(B, C, F, H, W)`` -> ``(B*F, C, H, W)``."""
    batch, channels, frames, height, width = x.shape
    return x.transpose(1, 2).reshape(batch * frames, channels, height, width)


def unfold_frames(x: torch.Tensor, frames: int) -> torch.Tensor:
    """``(B*F, C, H, W)`` -> ``(B, C, F, H, W)``."""
    batch_frames, channels, height, width = x.shape
    return x.reshape(batch_frames // frames, frames, channels, height, width).transpose(1, 2)


def build_denoising_unet(config: dict, additional_kwargs: dict) -> DenoisingUNet3D:
    return DenoisingUNet3D(UNetShape.from_config(config), MotionLayout.from_kwargs(additional_kwargs))
