"""ComfyUI node registration. The only package that imports ComfyUI."""

from . import animate_anyone, clipart, clipart_pose, clipart_sds, comfy_bridge, easyanimate, faces, pose, stable_animator, svd, video_nodes

# Each node module lists its classes in NODE_CLASSES; class names carry the AnimateSuite prefix.
_NODE_MODULES = (video_nodes, pose, faces, clipart, clipart_sds, clipart_pose, svd, easyanimate, animate_anyone, stable_animator)

comfy_bridge.register_model_folders()

NODE_CLASS_MAPPINGS = {cls.__name__: cls for module in _NODE_MODULES for cls in module.NODE_CLASSES}
NODE_DISPLAY_NAME_MAPPINGS = {name: cls.DISPLAY_NAME for name, cls in NODE_CLASS_MAPPINGS.items()}
