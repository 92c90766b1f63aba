"""EasyAnimate text-to-video: v1 (PixArt-alpha DiT + motion module) and v5.1 (diffusers), kohya LoRAs."""
