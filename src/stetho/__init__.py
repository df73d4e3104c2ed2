"""stetho: heart-sound (phonocardiogram) classification, from training to bedside scoring."""

__version__ = "0.1.0"
