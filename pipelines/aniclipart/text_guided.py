"""Text-guided clipart animation (AniClipart): keypoint trajectories optimised against a video prior.

Every keypoint of the clipart moves along a looping cubic Bézier whose control points come from the
trajectory MLP. Each iteration samples the distinct poses, lets the rig deform and rasterise the
artwork (``svg.ClipartRig.render``: ARAP with the keypoints as handles, per layer, then the
differentiable rasteriser), augments the clip, and minimises the SDS loss of the text-to-video prior
plus ``skeleton_weight`` times the skeleton loss with Adam and AniClipart's learning-rate schedule.
``animate_clipart`` turns the result into the same ``ClipartAnimation`` the procedural motions make.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, replace

import torch

from ...svg.animate import Clipart, ClipartAnimation
from ...svg.rig import ClipartRig
from ...svg.skeleton import bone_lengths, skeleton_length_loss
from ...svg.trajectories import bezier_poses, fix_start, frame_to_pose, init_bezier, sample_times, segment_length
from ...core.context import RunContext
from ...core.errors import InputError
from ...core.images import to_uint8
from .augment import FrameAugmentation
from .loading import T2VPrior
from .models import TrajectoryMLP
from .sds import SDSSettings, VideoSDS, draw_noise, embed_token_ids, tokenize_prompt

ADAM_BETAS = (0.9, 0.9)
ADAM_EPS = 1e-6
LATENT_MULTIPLE = 8  # the VAE downsamples by 8
PREVIEW_POSES = 6
FPS = 8.0  # AniClipart writes its clips at 8 frames per second


@dataclass(frozen=True)
class TextGuidedSettings:
    """AniClipart's script defaults (``scripts/run_aniclipart.sh``)."""

    iterations: int = 500  # Adam steps (AniClipart's loop runs num_iter + 1; the extra one is immaterial)
    num_frames: int = 24
    loop_num: int = 2
    guidance_scale: float = 50.0
    timestep_low: int = 50
    augment: bool = True
    skeleton_weight: float = 25.0
    bezier_radius: float = 0.01
    inter_dim: int = 128
    normalize_input: bool = True
    fix_start_points: bool = True
    lr: float = 0.005
    lr_init: float = 0.002
    lr_final: float = 0.0008
    lr_delay_mult: float = 0.1
    lr_delay_steps: float = 100.0
    constant_lr: bool = False

    def sds(self) -> SDSSettings:
        return SDSSettings(guidance_scale=self.guidance_scale, timestep_low=self.timestep_low)


PRESETS: dict[str, TextGuidedSettings] = {
    "aniclipart": TextGuidedSettings(),
    # 16 frames (the prior's native clip length, 4 distinct poses) and 150 steps with the schedule
    # compressed to match: about 5x less work per run. The trajectories stay smooth Béziers, so the
    # result can still be rendered at 24 frames or more.
    "fast": TextGuidedSettings(iterations=150, num_frames=16, lr_delay_steps=30.0),
}


def learning_rate_factor(step: int, settings: TextGuidedSettings) -> float:
    """AniClipart's LambdaLR factor: log-linear decay from lr_init to lr_final after a sine warm-up."""
    if settings.lr_delay_steps > 0:
        warmup = min(max(step / settings.lr_delay_steps, 0.0), 1.0)
        delay = settings.lr_delay_mult + (1 - settings.lr_delay_mult) * math.sin(0.5 * math.pi * warmup)
    else:
        delay = 1.0
    t = min(max(step / max(settings.iterations, 1), 0.0), 1.0)
    log_lerp = math.exp(math.log(settings.lr_init) * (1 - t) + math.log(settings.lr_final) * t)
    return delay * log_lerp / settings.lr_init


@dataclass
class TextGuidedResult:
    """The optimised motion. ``control_points`` [K, 4, 2] float64 define the Bézier of every keypoint;
    ``poses`` [P, K, 2] are the distinct sampled poses and ``frames`` [F, H, W, 3] the looped clip
    (frame f shows pose ``frame_to_pose[f]``)."""

    control_points: torch.Tensor
    poses: torch.Tensor
    frame_to_pose: torch.Tensor
    frames: torch.Tensor
    losses: list[float]
    mlp_state_dict: dict
    settings: TextGuidedSettings
    prompt: str
    seed: int
    width: int
    height: int

    def trajectories(self) -> dict:
        """JSON-ready description of the motion, enough to render it again at any frame count."""
        return {
            "width": self.width,
            "height": self.height,
            "num_frames": self.settings.num_frames,
            "loop_num": self.settings.loop_num,
            "control_points": self.control_points.tolist(),
            "prompt": self.prompt,
            "seed": self.seed,
            "settings": asdict(self.settings),
        }


def check_rig(rig: ClipartRig) -> None:
    keypoints = torch.as_tensor(rig.keypoints)
    if keypoints.ndim != 2 or keypoints.shape[1] != 2 or keypoints.shape[0] == 0:
        raise InputError("clipart", f"has keypoints of shape {tuple(keypoints.shape)}", "at least one keypoint, [K, 2]")
    bones = torch.as_tensor(rig.bones).reshape(-1, 2)
    if bones.numel() and (bones.min() < 0 or bones.max() >= keypoints.shape[0]):
        raise InputError("clipart", f"has bones naming keypoints outside 0..{keypoints.shape[0] - 1}", "valid skeleton indices")
    if rig.width % LATENT_MULTIPLE or rig.height % LATENT_MULTIPLE:
        raise InputError("clipart", f"is {rig.width}x{rig.height}", f"a canvas whose sides are multiples of {LATENT_MULTIPLE} (256x256 as AniClipart)")


def check_settings(settings: TextGuidedSettings) -> None:
    if settings.iterations < 1:
        raise InputError("iterations", f"is {settings.iterations}", "at least 1")
    if settings.loop_num < 0:
        raise InputError("loop_num", f"is {settings.loop_num}", "0 or more")
    if segment_length(settings.num_frames, settings.loop_num) < 2:
        raise InputError("num_frames", f"{settings.num_frames} with loop_num {settings.loop_num} samples fewer than 2 poses",
                         f"at least {2 * max(2 * settings.loop_num, 1)} frames")


def encode_prompt(prior: T2VPrior, prompt: str, ctx: RunContext) -> torch.Tensor:
    """Text embeddings [uncond, cond]; the text encoder is staged for this only."""
    if not prompt.strip():
        raise InputError("prompt", "is empty", "a caption describing the motion, e.g. 'A man is dancing.'")
    ctx.stage(prior.text_encoder)
    uncond, cond = tokenize_prompt(prior.tokenizer, prompt)
    return embed_token_ids(prior.text_encoder, uncond, cond, ctx.device)


def ensure_autograd_usable(module: torch.nn.Module) -> None:
    """Weights (re)loaded under ``torch.inference_mode`` cannot take part in autograd; use normal copies."""
    with torch.inference_mode(False):
        for tensor in list(module.parameters()) + list(module.buffers()):
            if tensor.is_inference():
                tensor.data = tensor.data.clone()


@dataclass
class MotionObjective:
    """One iteration's loss: trajectories -> distinct poses -> frames -> SDS + weighted skeleton term."""

    rig: ClipartRig
    trajectory: TrajectoryMLP
    sds: VideoSDS
    settings: TextGuidedSettings
    device: torch.device
    augmentation: FrameAugmentation = field(default_factory=FrameAugmentation)

    def __post_init__(self):
        self.times = sample_times(self.settings.num_frames, self.settings.loop_num)
        self.frame_index = frame_to_pose(len(self.times), self.settings.loop_num)
        self.rest_lengths = bone_lengths(self.rig.keypoints, self.rig.bones)

    def poses(self) -> torch.Tensor:
        return bezier_poses(self.trajectory(), self.times)

    def render(self, poses: torch.Tensor) -> torch.Tensor:
        """[P, H, W, 3] float32 on the run's device."""
        return self.rig.render(poses).to(device=self.device, dtype=torch.float32)

    def noise(self, generator: torch.Generator):
        shape = self.sds.latent_shape(1, len(self.frame_index), self.rig.height, self.rig.width)
        return draw_noise(shape, self.sds.bounds, generator)

    def __call__(self, noise, generator: torch.Generator | None = None):
        """(total loss, sds loss, skeleton loss, frames [P, H, W, 3] detached)."""
        poses = self.poses()
        frames = self.render(poses)
        video = frames.permute(0, 3, 1, 2)
        if self.settings.augment:
            video = self.augmentation(video, generator)
        sds_loss, _, _ = self.sds(video.unsqueeze(0), noise, self.frame_index)
        skeleton_loss = self.settings.skeleton_weight * skeleton_length_loss(poses, self.rig.bones, self.rest_lengths)
        return sds_loss + skeleton_loss, sds_loss.detach(), skeleton_loss.detach(), frames.detach()


def preview_strip(frames: torch.Tensor):
    """The first few distinct poses side by side, as a PIL image."""
    from PIL import Image

    strip = torch.cat(list(frames[:PREVIEW_POSES]), dim=1)
    return Image.fromarray(to_uint8(strip.unsqueeze(0).cpu())[0])


def initial_trajectory(rig: ClipartRig, settings: TextGuidedSettings, seed: int, device) -> TrajectoryMLP:
    """Nearly still Béziers (``bezier_radius``) from the keypoints and a freshly initialised MLP, both from ``seed``."""
    keypoints = torch.as_tensor(rig.keypoints, dtype=torch.float64).cpu()
    # AniClipart clips every control point into [5, W-5] x [5, H-5], the start too; a keypoint nearer the
    # border would then not start at rest, so the start stays the keypoint (the first frame is the art).
    initial = fix_start(init_bezier(keypoints, settings.bezier_radius, rig.width, rig.height, seed=seed), keypoints)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        trajectory = TrajectoryMLP(initial, settings.inter_dim, settings.normalize_input, settings.fix_start_points)
    return trajectory.to(device)


def _result(objective: MotionObjective, losses, settings, prompt, seed) -> TextGuidedResult:
    trajectory = objective.trajectory.eval()
    with torch.no_grad():
        controls = trajectory()
        poses = bezier_poses(controls, objective.times)
        frames = objective.render(poses)
    index = objective.frame_index.to(frames.device)
    return TextGuidedResult(
        control_points=controls.cpu(), poses=poses.cpu(), frame_to_pose=objective.frame_index,
        frames=frames[index].float().cpu(), losses=losses,
        mlp_state_dict={k: v.detach().cpu() for k, v in trajectory.mlp.state_dict().items()},
        settings=settings, prompt=prompt, seed=seed, width=objective.rig.width, height=objective.rig.height,
    )


def animate_from_text(rig: ClipartRig, prior: T2VPrior, prompt: str, settings: TextGuidedSettings = PRESETS["aniclipart"],
                      seed: int = 0, ctx: RunContext | None = None) -> TextGuidedResult:
    """Optimise the keypoint trajectories of ``rig`` so the clip matches ``prompt`` under ``prior``."""
    ctx = ctx or RunContext()
    check_rig(rig)
    check_settings(settings)
    devices = [ctx.device] if ctx.device.type == "cuda" else []
    with torch.inference_mode(False), torch.enable_grad(), torch.random.fork_rng(devices=devices):
        rig = rig.to(ctx.device)  # also makes tensors built under ComfyUI's inference mode usable by autograd
        embeddings = encode_prompt(prior, prompt, ctx)
        trajectory = initial_trajectory(rig, settings, seed, ctx.device)
        torch.manual_seed(seed)  # the MLP's dropout; the global generators are forked above
        objective = MotionObjective(rig, trajectory, VideoSDS(prior.unet, prior.vae, prior.scheduler, embeddings, settings.sds()),
                                    settings, ctx.device)
        optimizer = torch.optim.Adam(trajectory.mlp.parameters(), lr=settings.lr, betas=ADAM_BETAS, eps=ADAM_EPS)
        schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: learning_rate_factor(step, settings))
        generator = torch.Generator().manual_seed(seed)
        memory = objective.sds.memory_estimate(len(objective.times), len(objective.frame_index), rig.height, rig.width)
        losses = []
        for step in range(settings.iterations):
            ctx.check_interrupt()
            ctx.stage(prior.unet, prior.vae, memory_required=memory)
            ensure_autograd_usable(prior.vae)
            optimizer.zero_grad()
            loss, _, _, frames = objective(objective.noise(generator), generator)
            loss.backward()
            optimizer.step()
            if not settings.constant_lr:
                schedule.step()
            losses.append(float(loss.detach()))
            ctx.report(step + 1, settings.iterations, lambda: preview_strip(frames))
        return _result(objective, losses, settings, prompt, seed)


def animate_clipart(clipart: Clipart, prior: T2VPrior, prompt: str, settings: TextGuidedSettings = PRESETS["aniclipart"],
                    seed: int = 0, fps: float = FPS, ctx: RunContext | None = None) -> tuple[ClipartAnimation, TextGuidedResult]:
    """Text-guided motion for a loaded clipart (``svg.load_clipart``), as the ``ClipartAnimation`` the
    procedural motions make (one pose per output frame; render and save it at any size) plus the
    optimisation's result (its frames at the canvas size, trajectories and losses)."""
    if not (math.isfinite(fps) and fps > 0):
        raise InputError("fps", f"is {fps!r}", "a positive number of frames per second")
    result = animate_from_text(clipart.rig, prior, prompt, settings, seed, ctx)
    motion = {"mode": "text-guided", **result.trajectories()}
    animation = ClipartAnimation(clipart.rig, result.poses[result.frame_to_pose], float(fps), motion, clipart.name,
                                 clipart.svg_sha256)
    return animation, result


def settings_for(preset: str, **overrides) -> TextGuidedSettings:
    """A preset with some fields replaced (``None`` values keep the preset's)."""
    if preset not in PRESETS:
        raise InputError("preset", f"'{preset}' is unknown", "one of " + ", ".join(PRESETS))
    return replace(PRESETS[preset], **{k: v for k, v in overrides.items() if v is not None})
