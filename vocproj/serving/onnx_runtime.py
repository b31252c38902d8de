"""An exported vocproj model under ONNX Runtime: its session, its card and an Engine, no torch.

`python -m vocproj export` writes the network with the sigmoid inside, a dynamic batch axis, and
the model card (classes, thresholds, input size, normalisation) in the model's metadata, so that
this is all a service needs:

    engine, card = load_onnx_model("model.onnx")
    probabilities = engine(np.stack([model_input(read_image(p), card.image_size,
                                                 card.normalisation) for p in paths]))
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import onnxruntime

from vocproj.serving.predict import Engine, ModelCard, PredictError


def load_onnx_model(path: str | os.PathLike[str]) -> tuple[Engine, ModelCard]:
    """An Engine over the model's ONNX Runtime CPU session, and the card in its metadata."""
    session = _session(Path(path))
    card = ModelCard.from_metadata(session.get_modelmeta().custom_metadata_map, str(path))
    input_name = session.get_inputs()[0].name
    output_name = session.get_outputs()[0].name

    def run(batch: np.ndarray) -> np.ndarray:
        return session.run([output_name], {input_name: batch.astype(np.float32, copy=False)})[0]

    return run, card


def _session(path: Path) -> onnxruntime.InferenceSession:
    if not path.is_file():
        raise PredictError(
            f"ONNX model {path} not found; write it with `python -m vocproj export`."
        )
    try:
        return onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    except Exception as err:  # onnxruntime raises its own types for a file that is not a model
        raise PredictError(
            f"{path} is not an ONNX model ONNX Runtime can load ({type(err).__name__}: "
            f"{str(err)[:300]}); export it again with `python -m vocproj export`."
        ) from None
