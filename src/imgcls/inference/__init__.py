"""Layer 3: using a trained model — prediction, evaluation and Grad-CAM. The names below are imported
when first used (imgcls.lazy): the options dataclasses load without torch."""
from imgcls.lazy import lazy_exports

__all__ = lazy_exports(__name__, {
    "imgcls.inference.evaluate": ["evaluate"],
    "imgcls.inference.cam": ["CamResult", "Explainer", "GradCAM"],
    "imgcls.inference.options": ["CamOptions", "EvalOptions", "PredictOptions"],
    "imgcls.inference.predictor": ["Prediction", "Predictor", "expand_inputs"],
    "imgcls.inference.source": ["open_source"]})
