"""StableAnimator (Francis-Rings/StableAnimator): identity-preserving pose animation on SVD-xt.

- ``loading``: the released weights (unet.pth, pose_net.pth, face_encoder.pth, glintr100_torch.pth);
- ``svd_base``: the SVD-xt VAE, image encoder and scheduler from a diffusers folder;
- ``pipeline.animate``: sampling, with HJB face optimisation (``hjb``).
"""
