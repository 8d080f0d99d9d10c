"""Tokenizer and model loading: the embedded tiny default or any local Hugging Face checkpoint."""

from medgo.model.loading import ModelLoadError, load_model, load_model_and_tokenizer
from medgo.model.tokenizer import load_tokenizer

__all__ = ["ModelLoadError", "load_model", "load_model_and_tokenizer", "load_tokenizer"]
