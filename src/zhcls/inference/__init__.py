"""Post-training: the Classifier API and its I/O, the ONNX backend, export and explanations.

Everything here starts from a checkpoint directory (:mod:`zhcls.modeling.checkpoint`)."""
