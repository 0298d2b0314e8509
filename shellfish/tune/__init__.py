"""`shellfish tune`: LoRA fine-tuning of a local model on request -> command pairs.

- `data.py`: the training pairs (shipped NL2Bash train + tldr, the user's own) rendered as the
  exact run-time suggestion prompt;
- `worker.py`: the training loop and the adapter merge, run in the export environment;
- `run.py`: the orchestration (base checkpoint, data, worker, ONNX build, install).
"""
