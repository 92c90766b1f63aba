"""The two face networks: the FusionFaceId face encoder and the ArcFace IResNet face embedder.

- ``FusionFaceId`` turns a raw 512-d ArcFace embedding of the reference face, fused with the
  reference's CLIP image embedding by a small perceiver, into the 4 face tokens the UNet attends to.
- ``IResNet`` (insightface arcface_torch layout; iresnet100 is blocks (3, 13, 30, 3)) embeds 112x112
  face crops in [-1, 1]; HJB face optimisation compares these embeddings.
"""

from __future__ import annotations

import math

import torch
from torch import nn


class PerceiverAttention(nn.Module):
    """Latent queries attend to [context, latents]; softmax in float32."""

    def __init__(self, dim: int, dim_head: int, heads: int):
        super().__init__()
        self.dim_head = dim_head
        self.heads = heads
        inner_dim = dim_head * heads
        self.norm1 = nn.LayerNorm(dim)
        self.norm2 = nn.LayerNorm(dim)
        self.to_q = nn.Linear(dim, inner_dim, bias=False)
        self.to_kv = nn.Linear(dim, inner_dim * 2, bias=False)
        self.to_out = nn.Linear(inner_dim, dim, bias=False)

    def _split_heads(self, x: torch.Tensor) -> torch.Tensor:
        batch, length, _ = x.shape
        return x.view(batch, length, self.heads, -1).transpose(1, 2)

    def forward(self, context: torch.Tensor, latents: torch.Tensor) -> torch.Tensor:
        context = self.norm1(context)
        latents = self.norm2(latents)
        batch, length, _ = latents.shape
        query = self._split_heads(self.to_q(latents))
        key, value = (self._split_heads(t) for t in self.to_kv(torch.cat((context, latents), dim=-2)).chunk(2, dim=-1))
        # Scaling both factors by dim_head^-1/4 (rather than the product by ^-1/2) keeps fp16 in range.
        scale = 1 / math.sqrt(math.sqrt(self.dim_head))
        weight = (query * scale) @ (key * scale).transpose(-2, -1)
        weight = torch.softmax(weight.float(), dim=-1).type(weight.dtype)
        out = (weight @ value).permute(0, 2, 1, 3).reshape(batch, length, -1)
        return self.to_out(out)


def _feed_forward(dim: int, mult: int = 4) -> nn.Sequential:
    return nn.Sequential(nn.LayerNorm(dim), nn.Linear(dim, dim * mult, bias=False), nn.GELU(),
                         nn.Linear(dim * mult, dim, bias=False))


class FacePerceiver(nn.Module):
    def __init__(self, dim: int, embedding_dim: int, depth: int = 4, dim_head: int = 64, ff_mult: int = 4):
        super().__init__()
        self.proj_in = nn.Linear(embedding_dim, dim)
        self.proj_out = nn.Linear(dim, dim)
        self.norm_out = nn.LayerNorm(dim)
        self.layers = nn.ModuleList(
            nn.ModuleList([PerceiverAttention(dim, dim_head, dim // dim_head), _feed_forward(dim, ff_mult)])
            for _ in range(depth)
        )

    def forward(self, latents: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        context = self.proj_in(context)
        for attention, feed_forward in self.layers:
            latents = attention(context, latents) + latents
            latents = feed_forward(latents) + latents
        return self.norm_out(self.proj_out(latents))


class FusionFaceId(nn.Module):
    """ArcFace embedding [B, 512] + CLIP image embedding [B, 1, clip_dim] -> face tokens [B, num_tokens, dim]."""

    def __init__(self, cross_attention_dim: int = 1024, id_embeddings_dim: int = 512,
                 clip_embeddings_dim: int = 1024, num_tokens: int = 4):
        super().__init__()
        self.cross_attention_dim = cross_attention_dim
        self.num_tokens = num_tokens
        self.proj = nn.Sequential(
            nn.Linear(id_embeddings_dim, id_embeddings_dim * 2),
            nn.GELU(),
            nn.Linear(id_embeddings_dim * 2, cross_attention_dim * num_tokens),
        )
        self.norm = nn.LayerNorm(cross_attention_dim)
        self.fusion_model = FacePerceiver(cross_attention_dim, clip_embeddings_dim)

    def forward(self, id_embeds: torch.Tensor, clip_embeds: torch.Tensor) -> torch.Tensor:
        tokens = self.norm(self.proj(id_embeds).reshape(-1, self.num_tokens, self.cross_attention_dim))
        return self.fusion_model(tokens, clip_embeds)


# ----------------------------------------------------------------------------- ArcFace IResNet

IRESNET100_BLOCKS = (3, 13, 30, 3)
FACE_CROP_SIZE = 112


def _conv3x3(in_planes: int, out_planes: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_planes, out_planes, kernel_size=3, stride=stride, padding=1, bias=False)


class IBasicBlock(nn.Module):
    def __init__(self, in_planes: int, planes: int, stride: int = 1):
        super().__init__()
        self.bn1 = nn.BatchNorm2d(in_planes, eps=1e-5)
        self.conv1 = _conv3x3(in_planes, planes)
        self.bn2 = nn.BatchNorm2d(planes, eps=1e-5)
        self.prelu = nn.PReLU(planes)
        self.conv2 = _conv3x3(planes, planes, stride)
        self.bn3 = nn.BatchNorm2d(planes, eps=1e-5)
        self.downsample = None
        if stride != 1 or in_planes != planes:
            self.downsample = nn.Sequential(nn.Conv2d(in_planes, planes, kernel_size=1, stride=stride, bias=False),
                                            nn.BatchNorm2d(planes, eps=1e-5))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.bn3(self.conv2(self.prelu(self.bn2(self.conv1(self.bn1(x))))))
        identity = x if self.downsample is None else self.downsample(x)
        return out + identity


class IResNet(nn.Module):
    """Face crops [B, 3, 112, 112] in [-1, 1] (RGB) -> raw embeddings [B, num_features]."""

    def __init__(self, blocks=IRESNET100_BLOCKS, num_features: int = 512):
        super().__init__()
        self.conv1 = _conv3x3(3, 64)
        self.bn1 = nn.BatchNorm2d(64, eps=1e-5)
        self.prelu = nn.PReLU(64)
        in_planes = 64
        for index, (planes, count) in enumerate(zip((64, 128, 256, 512), blocks), start=1):
            layer = [IBasicBlock(in_planes, planes, stride=2)] + [IBasicBlock(planes, planes) for _ in range(count - 1)]
            setattr(self, f"layer{index}", nn.Sequential(*layer))
            in_planes = planes
        self.bn2 = nn.BatchNorm2d(512, eps=1e-5)
        self.dropout = nn.Dropout(p=0.0)
        self.fc = nn.Linear(512 * 7 * 7, num_features)
        self.features = nn.BatchNorm1d(num_features, eps=1e-5)

    def forward(self, faces: torch.Tensor) -> torch.Tensor:
        x = self.prelu(self.bn1(self.conv1(faces)))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        x = self.dropout(torch.flatten(self.bn2(x), 1))
        return self.features(self.fc(x))


def iresnet_blocks(keys) -> tuple[int, ...]:
    """Blocks per stage of an IResNet state dict (``layer<s>.<i>.…`` keys); (3, 13, 30, 3) for glintr100."""
    counts = [0, 0, 0, 0]
    for key in keys:
        stage, _, rest = key.partition(".")
        if stage in ("layer1", "layer2", "layer3", "layer4") and rest.split(".")[0].isdigit():
            counts[int(stage[-1]) - 1] = max(counts[int(stage[-1]) - 1], int(rest.split(".")[0]) + 1)
    return tuple(counts)
