"""AniClipart: SVG clipart animated along keypoint Bézier trajectories (procedural or text-guided).

Never imports ComfyUI. The text-guided half: ``loading`` (the ModelScope text-to-video prior from a
diffusers folder), ``sds`` (the Score-Distillation loss), ``augment`` (frame augmentation),
``models`` (the trajectory MLP) and ``text_guided`` (the optimisation loop on an ``svg.ClipartRig``).
The Bézier trajectories (initialisation, sampling, frame order) and the skeleton loss are the SVG
core's (``svg.trajectories``, ``svg.skeleton``), shared with the procedural motions.
"""
