"""TensorRT: ``build`` (engines from edgeseg ONNX), ``cache`` (keys, locks, one build per key) and
``session`` (running an engine). Importing this package imports no TensorRT; the functions that need it
import it themselves and say what is missing."""
