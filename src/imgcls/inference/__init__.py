"""Layer 3: using a trained model — prediction and evaluation (later: export and Grad-CAM)."""
from imgcls.inference.evaluate import evaluate
from imgcls.inference.options import EvalOptions, PredictOptions
from imgcls.inference.predictor import Prediction, Predictor, expand_inputs

__all__ = ["EvalOptions", "Prediction", "PredictOptions", "Predictor", "evaluate", "expand_inputs"]
