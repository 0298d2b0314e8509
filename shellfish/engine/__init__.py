"""The local inference engine: ONNX Runtime sessions driven by shellfish's own generation loop.

Path of a request: tasks (prompt building) -> engine.loader.load_model -> a runner
(seq2seq / causal / recurrent) -> sampling -> tokenizer (incremental detokenization).
Nothing here is imported eagerly: onnxruntime and numpy load only when a model loads.
"""
