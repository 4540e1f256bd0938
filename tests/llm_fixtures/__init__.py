"""Test fixtures for the model backends (a tiny GGUF writer)."""
