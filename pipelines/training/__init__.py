"""Training: AnimateAnyone stages 1 and 2, EasyAnimate v1 LoRA and motion module.

Model-independent pieces (phase 1); the networks themselves come from ``pipelines/animate_anyone`` and
``pipelines/easyanimate`` through the factories described in ``tasks.py``.

- ``config``: the YAML recipes (``configs/*.yaml``) as typed settings; unknown keys are refused.
- ``datasets``: AnimateAnyone meta-JSON video + pose-video pairs, EasyAnimate json/csv video/image lists.
- ``sampling``: the deterministic sample stream (shuffling, sharding, per-sample random seeds).
- ``losses``: noise schedules, v-prediction, noise offset, Min-SNR, zero-terminal SNR, the IDDPM loss.
- ``selection``: which parameters each stage/mode trains.
- ``lora``: LoRA adapters on Linear layers and the kohya file format.
- ``trainer``: the accelerate loop (DDP, sharded optimiser state, mixed precision, accumulation, EMA,
  checkpoints that resume bit-exactly, progress, validation callbacks).
- ``tasks``: what one training step of each method computes, and what it exports.
- ``prepare``: raw videos -> pose videos + meta JSON; clip folders -> EasyAnimate meta JSON.
"""
