"""Layer 3: what a run leaves behind — evaluation reports, the per-epoch metrics log, curves and
confusion-matrix PNGs."""
from imgcls.reports.metrics import (EPOCH_COLUMNS, ClassificationReport, MetricsLog, Mistake,
                                    classification_report, confusion_matrix, reported_ks, skipped_line,
                                    topk_correct)
from imgcls.reports.plots import plot_confusion_matrix, plot_curves

__all__ = ["EPOCH_COLUMNS", "ClassificationReport", "MetricsLog", "Mistake", "classification_report",
           "confusion_matrix", "reported_ks", "skipped_line", "topk_correct",
           "plot_confusion_matrix", "plot_curves"]
