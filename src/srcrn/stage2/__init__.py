"""Stage 2, the melanoma model family: the ``MelanomaModel`` protocol and its spec (a leaf), one
module per kind (the CNN, the lesion-feature model, their stack) and the one registry of kinds
that loads each from its file and reads and writes it in a bundle."""
