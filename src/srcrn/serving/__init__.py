"""The REST service and web page of ``srcrn serve``."""
