"""AnimateAnyone (Moore-AnimateAnyone): a reference image and a pose sequence become a video.

Models in ``models_*.py``, reference attention in ``reference_attention.py``, loading of the released
files in ``loading.py``, the sampler in ``pipeline.py``.
"""
