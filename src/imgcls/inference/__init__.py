"""Layer 3: using a trained model — prediction, evaluation and Grad-CAM (later: export)."""
from imgcls.inference.evaluate import evaluate
from imgcls.inference.cam import CamResult, Explainer, GradCAM
from imgcls.inference.options import CamOptions, EvalOptions, PredictOptions
from imgcls.inference.predictor import Prediction, Predictor, expand_inputs
from imgcls.inference.source import open_source

__all__ = ["CamOptions", "CamResult", "Explainer", "GradCAM", "EvalOptions", "Prediction", "PredictOptions", "Predictor", "evaluate", "expand_inputs",
           "open_source"]
