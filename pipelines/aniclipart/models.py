"""AniClipart's trajectory network: ``PointMLP`` predicts a pixel offset for every Bézier control point.

Module and buffer names follow the reference (``project_points``, ``embedding``, ``pos_encoder.pe``,
``project_xy``, ``model``, ``last_linear_layer``) so a state dict saved by AniClipart (its
``models/model.pt``) loads strictly, and ours load there.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from ...svg.trajectories import fix_start

# AniClipart divides pixel coordinates by this (its canvas size) before the MLP, whatever the canvas.
INPUT_SCALE = 256.0


class PositionalEncoding(nn.Module):
    """Sinusoidal table ``pe`` [max_len, 1, d_model]; the output is the dropped-out first rows."""

    def __init__(self, d_model: int, max_len: int, dropout: float = 0.1):
        super().__init__()
        self.dropout = nn.Dropout(p=dropout)
        position = torch.arange(max_len, dtype=torch.float32).unsqueeze(1)
        frequency = torch.exp(torch.arange(0, d_model, 2).float() * (-math.log(10000.0) / d_model))
        table = torch.zeros(max_len, d_model)
        table[:, 0::2] = torch.sin(position * frequency)
        table[:, 1::2] = torch.cos(position * frequency)
        self.register_buffer("pe", table.unsqueeze(1))

    def forward(self, count: int) -> torch.Tensor:
        return self.dropout(self.pe[:count])


class PointMLP(nn.Module):
    """Control points [1, N, 2] (N = 4 per keypoint, normalised) -> offsets [N, 2] in pixels."""

    def __init__(self, num_points: int, inter_dim: int = 128, dropout: float = 0.1):
        super().__init__()
        input_dim = 2 * num_points
        self.project_points = nn.Sequential(
            nn.Linear(2, inter_dim), nn.LayerNorm(inter_dim), nn.LeakyReLU(), nn.Linear(inter_dim, inter_dim)
        )
        # The reference builds this table but its forward never uses it; it is kept so state dicts match.
        self.embedding = nn.Embedding(input_dim, inter_dim)
        self.pos_encoder = PositionalEncoding(inter_dim, max_len=input_dim, dropout=dropout)
        self.project_xy = nn.Sequential(
            nn.Flatten(), nn.Linear(num_points * inter_dim, inter_dim), nn.LayerNorm(inter_dim), nn.LeakyReLU()
        )
        self.model = nn.Sequential(
            nn.Linear(inter_dim, inter_dim), nn.LayerNorm(inter_dim), nn.LeakyReLU(),
            nn.Linear(inter_dim, inter_dim), nn.LayerNorm(inter_dim), nn.LeakyReLU(),
        )
        self.last_linear_layer = nn.Linear(inter_dim, input_dim)

    def forward(self, points: torch.Tensor) -> torch.Tensor:
        num_points = points.shape[1]
        encoded = self.project_points(points) + self.pos_encoder(num_points).permute(1, 0, 2)
        hidden = self.model(self.project_xy(encoded))
        return self.last_linear_layer(hidden).reshape(points.shape).squeeze(0)


class TrajectoryMLP(nn.Module):
    """The optimised trajectories: initial control points plus the MLP's offsets.

    ``initial`` [K, 4, 2] float64 are the starting Béziers; ``forward()`` returns the current control
    points [K, 4, 2] float64. With ``fix_start_points`` every curve starts at its keypoint's rest
    position, so the first frame is the input artwork.
    """

    def __init__(self, initial: torch.Tensor, inter_dim: int = 128, normalize_input: bool = True,
                 fix_start_points: bool = True):
        super().__init__()
        self.register_buffer("initial", initial.to(torch.float64).clone())
        self.normalize_input = normalize_input
        self.fix_start_points = fix_start_points
        self.mlp = PointMLP(initial.shape[0] * 4, inter_dim)

    def mlp_input(self) -> torch.Tensor:
        points = self.initial.reshape(1, -1, 2).float()
        return points / INPUT_SCALE if self.normalize_input else points

    def forward(self) -> torch.Tensor:
        delta = self.mlp(self.mlp_input()).reshape(self.initial.shape)
        controls = self.initial + delta
        return fix_start(controls, self.initial[:, 0]) if self.fix_start_points else controls
