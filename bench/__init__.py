"""`python -m bench`: flashc against hand-written PyTorch and torch.onnx.export, in one run.

Sections (run one with `--only NAME`):

- ``train``      time per training step: flashc's Trainer vs a hand-written module and loop
- ``compile``    spec text -> ONNX file: flashc in-process and as a CLI process vs torch.onnx.export
- ``size``       ONNX node count and initializer bytes per producer
- ``ort``        onnxruntime latency of the encoder per graph, with and without ORT's transformers optimizer
- ``rss``        peak RSS of `flashc check` / `flashc compile` for GPT-2 small, and where it goes
- ``scaling``    check and compile time against encoder depth, with a linear fit
- ``agreement``  every benchmarked ONNX graph against eager PyTorch

Every ratio compares two things measured in the same run, interleaved where they are timed.
"""
