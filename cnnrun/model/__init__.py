"""The model: a `keras.Model` built from the experiment, compiled, started from weights, loaded back.

- `build`: the model of an experiment (a chain or a graph, wired by `graph`; layer names from `layer_names`).
- `compiling`, `schedules`, `losses`: the optimizer, its learning-rate schedule and the loss.
- `backbones`, `whitening`, `init_from`, `phases`: pretrained networks, airbench's frozen first layer, weights
  from an earlier run, fine-tuning in phases.
- `custom_objects`: the one table of cnnrun's own Keras classes; `checkpoints`: loading `.keras` files in safe
  mode; `scoring`: from a model's outputs to probabilities and scores, test-time augmentation.

May import: the base modules, `config`, `devices`, `data`, `run_folder`. Nothing above.
"""
