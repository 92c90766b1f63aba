"""EasyAnimate's samplers: v1's five diffusers schedulers with v1's noise schedule, and v5.1's flow matching.

v1 builds each scheduler as ``Cls(**noise_scheduler_kwargs)`` (``configs/v1_noise_scheduler.json``:
linear betas 0.0001..0.02, ``steps_offset`` 1); every other field is the diffusers default
(``timestep_spacing="linspace"``; DPM++ is ``dpmsolver++`` order 2 with ``lower_order_final``).
"""

from __future__ import annotations

import json
from pathlib import Path

from ...core.errors import InputError

CONFIG_DIR = Path(__file__).resolve().parent / "configs"

# Sampler name -> diffusers scheduler class, as EasyAnimate's predict_t2v.py and UI name them.
V1_SAMPLERS = {
    "DPM++": "DPMSolverMultistepScheduler",
    "Euler": "EulerDiscreteScheduler",
    "Euler A": "EulerAncestralDiscreteScheduler",
    "PNDM": "PNDMScheduler",
    "DDIM": "DDIMScheduler",
}
V1_DEFAULT_SAMPLER = "DPM++"
FLOW = "Flow"  # v5.1 is trained with flow matching: the folder's FlowMatchEulerDiscreteScheduler
SAMPLERS = tuple(V1_SAMPLERS) + (FLOW,)


def v1_noise_schedule() -> dict:
    return json.loads((CONFIG_DIR / "v1_noise_scheduler.json").read_text())


def v1_scheduler(sampler: str):
    """A fresh diffusers scheduler for ``sampler`` with v1's settings."""
    if sampler not in V1_SAMPLERS:
        expected = "one of " + ", ".join(V1_SAMPLERS)
        if sampler == FLOW:
            raise InputError("sampler", "'Flow' is v5.1's sampler; EasyAnimate v1 was trained for the others.", expected)
        raise InputError("sampler", f"'{sampler}' is unknown.", expected)
    import diffusers

    return getattr(diffusers, V1_SAMPLERS[sampler])(**v1_noise_schedule())


def v51_scheduler(sampler: str, folder_scheduler_config: dict):
    """v5.1's flow-matching scheduler, configured from the model folder's ``scheduler/``."""
    if sampler != FLOW:
        raise InputError("sampler", f"'{sampler}' does not fit EasyAnimate v5.1, which is trained with flow matching.",
                         f"'{FLOW}'")
    from diffusers import FlowMatchEulerDiscreteScheduler

    return FlowMatchEulerDiscreteScheduler.from_config(folder_scheduler_config)
