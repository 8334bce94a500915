"""Training package: networks, losses, augmentation, dataset and the training loop."""
