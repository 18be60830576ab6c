"""cnnrun: train, resume and judge convolutional networks described in YAML, on Keras 3."""

__version__ = "0.1.0"
