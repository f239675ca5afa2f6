"""servescope export: train the sentiment model, write an ONNX model repository (sole TensorFlow user)."""
