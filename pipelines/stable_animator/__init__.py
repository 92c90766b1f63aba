"""StableAnimator (Francis-Rings/StableAnimator): identity-preserving pose animation on SVD-xt.

- ``loading``: the released weights (unet.pth, pose_net.pth, face_encoder.pth, glintr100_torch.pth)
  and the SVD-xt VAE, image encoder and scheduler through the SVD loader (``pipelines.svd.loading``);
- ``pipeline.animate``: sampling on SVD's stages (``pipelines.svd.stages``) over StableAnimator's frame
  tiles (``core.frame_windows.frame_tiles``), with HJB face optimisation (``hjb``).
"""
