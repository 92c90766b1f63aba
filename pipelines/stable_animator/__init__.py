"""StableAnimator (Francis-Rings/StableAnimator): identity-preserving pose animation on SVD-xt.

- ``loading``: the released weights (unet.pth, pose_net.pth, face_encoder.pth, glintr100_torch.pth)
  and the SVD-xt VAE, image encoder and scheduler through the SVD loader (``pipelines.svd.loading``);
- ``pipeline.animate``: sampling, with HJB face optimisation (``hjb``).
"""
