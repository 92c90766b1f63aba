"""The shared core every layer above may use: run context, errors, checkpoints, images, video, model files,
Live Photo, and the command-line plumbing. Plain Python/PyTorch; imports nothing of the pack above it."""
