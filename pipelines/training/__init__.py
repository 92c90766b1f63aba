"""Training: AnimateAnyone stages 1 and 2, EasyAnimate v1 LoRA and motion module.

The method-independent machinery. Each method's task (what one step computes, trains and exports) and its
networks live in its own package (``pipelines/animate_anyone/training_task.py`` + ``training.py``,
``pipelines/easyanimate/training_task.py`` + ``training.py``), named by dotted path in ``tasks.py``'s
tables, so nothing here imports a method package.

- ``config``: the YAML recipes (``configs/*.yaml``) as typed settings; unknown keys are refused (each task
  types its method's ``data`` and ``noise`` sections).
- ``datasets``: what the datasets share: frame/image reading, crops, resizes, meta-file lists, frame picking
  (AnimateAnyone's video + pose-video pairs and EasyAnimate's captioned clips are in each method's
  ``training_data.py``).
- ``sampling``: the deterministic sample stream (shuffling, sharding, per-sample random seeds).
- ``losses``: noise schedules, v-prediction, noise offset, Min-SNR, zero-terminal SNR, the IDDPM loss.
- ``selection``: parameter rules (name fragments, LoRA adapters), freezing, gradient checkpointing.
- ``lora``: LoRA adapters on Linear layers and the kohya file format.
- ``trainer``: the accelerate loop (DDP, sharded optimiser state, mixed precision, accumulation, EMA,
  checkpoints that resume bit-exactly, progress, validation callbacks).
- ``tasks``: the task interface, the method -> task / model factory tables, helpers the tasks share.
- ``prepare``: raw videos -> pose videos + meta JSON; clip folders -> EasyAnimate meta JSON.
"""
