"""The decoder LM (dot-product or 2-simplicial attention), its counts, data and training loop."""

from simplicial.model import LM, ModelConfig

__all__ = ["LM", "ModelConfig"]
