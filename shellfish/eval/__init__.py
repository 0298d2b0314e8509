"""Evaluation of command suggestions: the NLC2CMD metric (`metric`) and the eval loop (`run`)."""
