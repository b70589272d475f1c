"""The decoder LM (dot-product or 2-simplicial attention), its counts, data and training loop.

`ModelConfig` (simplicial.config), `counting` and `sizes` need no torch; `LM` loads torch on first use.
"""

from simplicial.config import ModelConfig

__all__ = ["LM", "ModelConfig"]


def __getattr__(name: str):
    if name == "LM":
        from simplicial.model import LM

        return LM
    raise AttributeError(f"module 'simplicial' has no attribute {name!r}")
