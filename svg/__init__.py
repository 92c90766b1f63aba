"""SVG clipart: parsing, keypoints, mesh, deformation, rasterisation. Never imports ComfyUI."""
