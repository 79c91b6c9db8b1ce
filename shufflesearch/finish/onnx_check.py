"""The exported ONNX file predicts what the PyTorch network predicts, image for image.

Both see the same 0-255 float pixels: the ONNX graph normalises inside itself (the export
bakes the mean and std in), PyTorch is given the normalised tensor. A prediction may only
differ where PyTorch's own top two logits tie within rounding (`TIE_MARGIN`).
"""

from __future__ import annotations

from typing import Any

from ..errors import MachineError

TIE_MARGIN = 1e-4  # logits this close: float rounding may legitimately order them either way
BATCH = 256


class OnnxMismatch(MachineError):
    """ONNX Runtime's predictions differ from PyTorch's: the exported file would ship another network."""


def check_onnx_predictions(onnx_path, model, pixels, mean, std) -> dict[str, Any]:
    """Compare predictions on `pixels` (N, C, H, W; 0-255) and return {"images", "agree", "max_abs_diff"}.

    Raises OnnxMismatch (one line) if a prediction differs beyond a tie.
    """
    import numpy as np
    import onnxruntime as ort
    import torch

    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    mean_t = torch.as_tensor(mean, dtype=torch.float32).view(1, -1, 1, 1)
    std_t = torch.as_tensor(std, dtype=torch.float32).view(1, -1, 1, 1)
    model = model.to("cpu").eval()
    agree = differ = 0
    max_diff = 0.0
    with torch.no_grad():
        for i in range(0, len(pixels), BATCH):
            x = torch.as_tensor(pixels[i : i + BATCH]).float()
            reference = model((x - mean_t) / std_t).float().numpy()
            logits = session.run(None, {name: x.numpy()})[0]
            max_diff = max(max_diff, float(np.abs(logits - reference).max()))
            same = logits.argmax(1) == reference.argmax(1)
            top2 = np.sort(reference, axis=1)[:, -2:]
            tie = (top2[:, 1] - top2[:, 0]) < TIE_MARGIN * np.maximum(1.0, np.abs(top2[:, 1]))
            agree += int(same.sum())
            differ += int((~same & ~tie).sum())
    if differ:
        raise OnnxMismatch(f"{onnx_path}: ONNX Runtime predicts another class than PyTorch on {differ} of "
                           f"{len(pixels)} images (max logit difference {max_diff:.3g})")  # fmt: skip
    return {"images": len(pixels), "agree": agree, "max_abs_diff": max_diff}


__all__ = ["TIE_MARGIN", "OnnxMismatch", "check_onnx_predictions"]
