"""The lesion's shape and colour from an image and its mask: the clinician's measurements and the
feature table of the lesion-feature model (torch-free: numpy, scipy, scikit-image)."""
