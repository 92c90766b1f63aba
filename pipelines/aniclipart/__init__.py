"""AniClipart: SVG clipart animated along keypoint Bézier trajectories (procedural or text-guided).

Never imports ComfyUI. The text-guided half: ``loading`` (the ModelScope text-to-video prior from a
diffusers folder), ``sds`` (the Score-Distillation loss), ``augment`` (frame augmentation),
``models`` (the trajectory MLP), ``bezier`` (trajectory initialisation and sampling), ``losses``
(skeleton loss) and ``text_guided`` (the optimisation loop against a ``ClipartRig``).
"""
