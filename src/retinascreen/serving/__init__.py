"""Using a trained model: the Predictor, heat maps, ONNX export, batch screening."""
