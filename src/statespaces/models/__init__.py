"""Models built from the sequence layers: a backbone with task heads, and a language model."""

from .lm import LanguageModel, sample_next
from .sequence import MODEL_CLASSES, ModelConfig, ModelState, SequenceModel

__all__ = ["ModelConfig", "ModelState", "SequenceModel", "LanguageModel", "MODEL_CLASSES", "sample_next"]
