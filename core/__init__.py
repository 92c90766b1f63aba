"""The shared core every layer above may use: run context, errors, checkpoints, images, video, model files,
Live Photo, frame windows for long clips, latent previews and the command-line arguments. Plain Python/PyTorch;
imports nothing of the pack above it."""
