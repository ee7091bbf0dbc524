"""srcrn: two-stage melanoma detection (SRCRN segmentation + ResNet-50 classification)."""

__version__ = "0.1.0"
