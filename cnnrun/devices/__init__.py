"""Devices: what must be settled before Keras is imported, and where training runs.

- `backend`: the Keras backend (TensorFlow or JAX) and the cluster checks, run by the CLI before anything imports
  Keras.
- `distribute`: the distribution (one device, `tf.distribute.MirroredStrategy` over several GPUs, several
  machines) a Trainer builds its model and data under.

May import: `cnnrun.errors`, `cnnrun.config`. Nothing above.
"""
