"""AnimateAnyone (Moore-AnimateAnyone): a reference image and a pose sequence become a video.

Models in ``models_*.py`` (the motion module is shared: ``pipelines/motion_module.py``), reference attention
in ``reference_attention.py``, loading of the released files in ``loading.py``, the settings in ``settings.py``,
the sampler in ``pipeline.py``, the command line in ``cli.py``, training stages 1/2 in ``training_task.py``
(what a step computes) and ``training.py`` (model factory, validation sampler).
"""
