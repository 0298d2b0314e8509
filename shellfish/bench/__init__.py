"""`shellfish bench`: shellfish's engine side by side with the peers, on the same model and input.

- `spec`     what to measure (models, engines, generation lengths, contexts, repeats, seed)
- `models`   where a bench model's files are (ONNX, int8, int4/genai, transformers, CT2, GGUF)
- `inputs`   reproducible token inputs from a seed
- `engines`  one plugin per engine (shellfish and each peer); a missing peer says why
- `worker`   the subprocess that loads ONE engine and times it (engines never share a process)
- `harness`  spawns the workers, watches their memory, survives broken peers
- `results`  the result records, ratios against shellfish, JSON files
- `report`   the rich tables;  `plots`  the matplotlib figures
"""
