"""The text-guided half of the ``clipart`` command: ``clipart INPUT.svg --prompt "..." --out OUT.gif``.

The ``clipart`` command (``pipelines/aniclipart/cli.py``: SVG loading, procedural motion, output writing) adds these
arguments with ``add_prompt_arguments(parser)`` and, when ``--prompt`` is given, gets the animation from
``run_prompt(args, clipart)``; it is written out like a procedural one.
"""

from __future__ import annotations

from pathlib import Path


def add_prompt_arguments(parser) -> None:
    from ...core.cli_args import PRECISIONS, add_models_dir_argument
    from .text_guided import PRESETS

    group = parser.add_argument_group("text-guided motion (AniClipart SDS with text-to-video-ms-1.7b)")
    group.add_argument("--prompt", help="caption of the motion, e.g. 'A man is dancing.'; optimises the "
                                        "trajectories against the ModelScope text-to-video prior instead of --motion")
    add_models_dir_argument(group)
    group.add_argument("--t2v-model", type=Path, default=None,
                       help="text-to-video-ms-1.7b diffusers folder (default: looked up in <models-dir>/diffusers)")
    group.add_argument("--preset", choices=sorted(PRESETS), default="aniclipart",
                       help="aniclipart: the paper's 500 steps, 24 frames; fast: 150 steps, 16 frames")
    group.add_argument("--iterations", type=int, default=None, help="optimisation steps (default: the preset's)")
    group.add_argument("--guidance", type=float, default=None, help="classifier-free guidance of the prior (default 50)")
    group.add_argument("--precision", choices=PRECISIONS, default="auto",
                       help="auto: fp16 on a GPU as AniClipart, fp32 on CPU")


def prior_folder(args) -> Path:
    """``--t2v-model``, or the registered text-to-video-ms-1.7b folder under the models directory."""
    if args.t2v_model is not None:
        return Path(args.t2v_model)
    from ...core.cli_args import locator_from_args
    from ...core import model_registry

    return model_registry.require(model_registry.MODELSCOPE_T2V, "diffusers", locator_from_args(args))


def run_prompt(args, clipart):
    """Load the prior and optimise the motion of ``clipart`` for ``args.prompt``: a ``ClipartAnimation``.

    Uses the ``clipart`` command's ``--seed``, ``--frames`` (default: the preset's), ``--fps`` (default 8,
    as AniClipart), ``--free-start`` and ``--device`` (default: cuda when available).
    """
    from ...core.cli_args import choose_device, choose_precision, progress_printer
    from ...core.context import RunContext
    from .loading import load_t2v_prior
    from .text_guided import FPS, animate_clipart, settings_for

    device = choose_device(args.device)
    _, dtype = choose_precision(args.precision, device)
    prior = load_t2v_prior(prior_folder(args), dtype)
    settings = settings_for(args.preset, iterations=args.iterations, guidance_scale=args.guidance,
                            num_frames=args.frames, fix_start_points=not args.free_start)
    ctx = RunContext(device=device, dtype=dtype, progress=progress_printer("text-guided motion: step ", every=10))
    animation, _ = animate_clipart(clipart, prior, args.prompt, settings, args.seed, FPS if args.fps is None else args.fps, ctx)
    return animation
