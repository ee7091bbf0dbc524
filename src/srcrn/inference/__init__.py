"""Inference: both stages run over single images and folders (the ``Pipeline`` and the batch
job of ``srcrn predict``)."""
