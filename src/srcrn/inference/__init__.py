"""Inference: running trained models over prepared data and single images."""
