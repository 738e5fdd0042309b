"""mos: train audio(+text) MOS predictors in PyTorch, export them to ONNX, score without PyTorch."""

__version__ = "0.1.0"
