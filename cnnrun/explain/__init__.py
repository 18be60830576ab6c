"""What a trained network sees: Grad-CAM and saliency maps, learnt filters, feature maps, and the data itself.

- `network`: find a layer (inside a nested model too) and run a model with one layer's output taken or replaced.
- `gradients`: gradients through the Keras backend (TensorFlow or JAX) and the four heat maps built on them.
- `pictures`: `cnnrun explain`: heat maps over pictures, as PNG files.
- `mistakes`: `evaluate --explain N`: Grad-CAM over a split's top losses, as one grid.
- `filters`, `activations`: `cnnrun filters` and `cnnrun activations`.

Nothing here trains or changes a model: a run's checkpoint is read, never written. The figures are drawn by
`cnnrun.figures`.

May import: the base modules, `config`, `devices`, `data`, `run_folder`, `model`. Nothing above.
"""
