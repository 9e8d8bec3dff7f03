"""Models built from the sequence layers: a backbone with task heads, and a language model."""

from .lm import LanguageModel, sample_next
from .mamba_ssm import load_mamba_ssm
from .sequence import MODEL_CLASSES, ModelConfig, ModelState, SequenceModel

__all__ = ["ModelConfig", "ModelState", "SequenceModel", "LanguageModel", "MODEL_CLASSES", "sample_next", "load_mamba_ssm"]
