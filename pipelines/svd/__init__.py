"""Stable Video Diffusion img2vid: loading the official files, sampling, Live Photo export."""
