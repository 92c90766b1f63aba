"""Animate Suite: animation methods as ComfyUI nodes (SVD, AnimateAnyone, StableAnimator, EasyAnimate,
AniClipart, DWPose and faces).

ComfyUI imports this folder from custom_nodes/ and reads NODE_CLASS_MAPPINGS; pip installs the same
code as ``comfyui_animate_suite`` for the CLI and tests. The node mappings are resolved on first
access, so importing the package outside ComfyUI never touches ``comfy``.
"""

__version__ = "0.1.0"

WEB_DIRECTORY = "./web/js"

_NODE_ATTRIBUTES = ("NODE_CLASS_MAPPINGS", "NODE_DISPLAY_NAME_MAPPINGS")


def __getattr__(name):
    if name in _NODE_ATTRIBUTES:
        from . import nodes

        return getattr(nodes, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["NODE_CLASS_MAPPINGS", "NODE_DISPLAY_NAME_MAPPINGS", "WEB_DIRECTORY"]
