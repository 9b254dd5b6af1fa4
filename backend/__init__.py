"""ZeroShape-W inference backend: the model, its checkpoints, the image-to-mesh pipeline and the server."""

__version__ = "0.1.0"
