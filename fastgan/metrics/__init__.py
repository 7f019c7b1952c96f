"""Evaluation metrics: FID, KID, Inception Score, precision/recall, and offline
classifier-based metrics (fid_classifier, classifier accuracy, CAS). See api.py for
``compute_metrics`` and cli.py for ``fastgan eval``."""

from .api import METRICS, compute_metrics
from .classifier import SmallCNN, load_or_train_classifier
from .frechet import FeatureStats, frechet_distance
from .inception import FIDInceptionV3, InceptionWeightsError, load_fid_inception
from .inception_score import inception_score
from .kid import kernel_inception_distance
from .precision_recall import precision_recall
from .sources import (
    GeneratorSource,
    TensorSource,
    dataset_source,
    generator_from_checkpoint,
    image_folder_source,
    register_checkpoint_loader,
)

__all__ = [
    "METRICS",
    "compute_metrics",
    "FeatureStats",
    "frechet_distance",
    "kernel_inception_distance",
    "inception_score",
    "precision_recall",
    "FIDInceptionV3",
    "InceptionWeightsError",
    "load_fid_inception",
    "SmallCNN",
    "load_or_train_classifier",
    "GeneratorSource",
    "TensorSource",
    "dataset_source",
    "image_folder_source",
    "generator_from_checkpoint",
    "register_checkpoint_loader",
]
