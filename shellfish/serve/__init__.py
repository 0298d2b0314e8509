"""`shellfish serve`: a local OpenAI-compatible endpoint over shellfish's models."""
