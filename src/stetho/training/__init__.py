"""Training: data, augmentation, optimisation and the per-fold loop."""
