"""Pose and face extraction (DWPose, alignment, face masks). Never imports ComfyUI.

- ``dwpose``: the detector + whole-body model pipeline (``detector``, ``estimator``, ``sessions``),
  ``keypoints``: the 134-point layout and ``FramePose``;
- ``render``: pose images in the AnimateAnyone / StableAnimator / controlnet_aux conventions;
- ``openpose_json``: ``POSE_KEYPOINT`` / OpenPose JSON; ``align``: fitting, smoothing, canvases;
- ``faces``: insightface packs on onnxruntime, face masks;
- ``resize``, ``warp``, ``drawing``: the OpenCV routines the references use, reproduced in numpy.
"""
