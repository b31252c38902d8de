"""The serving wing: the trained model at work outside the notebooks.

- `predict`: classes for photos, files and folders, written as a table, JSON or CSV; needs
  numpy and Pillow only, with any engine
- `export`: a run's best checkpoint exported to ONNX with its card, and the PyTorch engine
- `onnx_runtime`: the ONNX engine (onnxruntime), torch-free
"""
