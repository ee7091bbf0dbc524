"""The low runtime layer: running a network (ONNX Runtime or PyTorch), reading checkpoints, the
stage-1 segmenter and its post-processing. Knows nothing of stage 2, bundles or answers."""
