"""Parity with Moore-AnimateAnyone: every case of ../shared/parity/animate_anyone/manifest.json.

The fixture holds tiny random-weight models in the released file layout and the reference's outputs.
They are loaded through the same loaders as the released weights, and every setting comes from the
manifest. Targets: final latents to 1e-4, videos to 1e-3.

Precision: the reference hands the ReferenceNet features to the denoising UNet in float16, so on this
random-weight fixture float32 rounding anywhere upstream (VAE, CLIP, ReferenceNet kernels) flips some
of those float16 values: moving the reference latents by 1e-7 moves the final latents by about 8e-5.
Two float32 implementations therefore agree only to about 1e-4 on the latents, whatever their quality.
The 1e-4 latent target is checked with our pipeline in float64 (the same code and loaders with
``dtype=float64``), which leaves only the reference's own float32 rounding; the float32 run must match
the videos to 1e-3 and the latents to FP32_LATENTS.
"""

import json

import pytest
import torch

from comfyui_animate_suite.core.context import RunContext
from comfyui_animate_suite.pipelines.animate_anyone.loading import AnimateAnyoneFiles, load_models
from comfyui_animate_suite.pipelines.animate_anyone.pipeline import AnimateAnyoneSettings, animate, initial_noise

LATENTS = 1e-4
VIDEOS = 1e-3
FP32_LATENTS = 5e-4


@pytest.fixture(scope="module")
def fixture(shared_dir):
    folder = shared_dir / "parity" / "animate_anyone"
    if not (folder / "manifest.json").is_file():
        pytest.skip("../shared/parity/animate_anyone is absent")
    return folder, json.loads((folder / "manifest.json").read_text())


@pytest.fixture(scope="module")
def inputs(fixture):
    from PIL import Image

    folder, manifest = fixture
    poses = sorted(folder.glob("pose_*.png"))
    assert len(poses) == manifest["video_length"], "one pose frame per video frame"
    return Image.open(folder / "ref.png"), [Image.open(path) for path in poses]


def _settings(manifest: dict, case: dict) -> AnimateAnyoneSettings:
    return AnimateAnyoneSettings(
        width=manifest["width"], height=manifest["height"], steps=case["steps"], guidance=case["guidance_scale"],
        seed=case["seed"], context_frames=case["context_frames"], context_overlap=case["context_overlap"],
        context_stride=case["context_stride"],
    )


def test_seeds_draw_the_reference_initial_noise(fixture):
    folder, manifest = fixture
    noise = torch.load(folder / "noise.pt", weights_only=True)
    seeds = {case["seed"] for case in manifest["cases"].values()}
    drawn = [initial_noise(seed, manifest["video_length"], manifest["width"], manifest["height"]) for seed in seeds]
    assert any(torch.equal(candidate, noise) for candidate in drawn)


@pytest.mark.parametrize("dtype, latent_tolerance", [(torch.float64, LATENTS), (torch.float32, FP32_LATENTS)],
                         ids=["float64", "float32"])
def test_every_manifest_case_reproduces_the_reference(fixture, inputs, dtype, latent_tolerance):
    folder, manifest = fixture
    reference, poses = inputs
    models = load_models(AnimateAnyoneFiles.in_folder(folder), dtype=dtype)
    report = []
    for name, case in manifest["cases"].items():
        result = animate(models, reference, poses, _settings(manifest, case), RunContext(dtype=dtype))
        expected_latents = torch.load(folder / f"expected_{name}_latents.pt", weights_only=True)
        expected_video = torch.load(folder / f"expected_{name}.pt", weights_only=True)
        video = result.frames.permute(3, 0, 1, 2).unsqueeze(0)  # (1, 3, F, H, W) as the reference returns
        assert video.shape == expected_video.shape and result.latents.shape == expected_latents.shape, name
        latent_error = (result.latents - expected_latents).abs().max().item()
        video_error = (video - expected_video).abs().max().item()
        report.append((name, latent_error, video_error))
    print("\n".join(f"{dtype} {n}: latents {l:.2e}, video {v:.2e}" for n, l, v in report))
    assert all(latent <= latent_tolerance and video <= VIDEOS for _, latent, video in report), report
