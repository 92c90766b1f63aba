"""Stable Video Diffusion img2vid: converting and loading the official files (``convert``, ``loading``), the stages
SVD-family methods share (``stages``), the samplers and the img2vid pipeline. Live Photo export is generic
(``core/livephoto.py``)."""
