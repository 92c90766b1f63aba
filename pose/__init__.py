"""Pose and face extraction (DWPose, alignment, face masks). Never imports ComfyUI."""
