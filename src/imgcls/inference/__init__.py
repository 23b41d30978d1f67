"""Layer 3: using a trained model — prediction (and, later, export and Grad-CAM)."""
from imgcls.inference.predictor import Prediction, Predictor, expand_inputs

__all__ = ["Prediction", "Predictor", "expand_inputs"]
