"""Evaluation: metric definitions identical to the official ISIC scorer, and eval runs."""
