"""The run folder: a run's files on disk, created, found, held and read back; no Keras and no TensorFlow.

- `files`: every file name of a run folder and every file's schema (state, meta, dataset, splits, scores,
  history, summary), in one place.
- `folder`: `Run` (one run folder, its files read and written through those schemas), `create_run`, `open_run`,
  `find_latest_run`.
- `lock`: `run.lock`, one process at a time writes a run folder.

Files are written whole or not at all (`cnnrun.atomic`). Loading a checkpoint needs Keras and cnnrun's own layers,
so it lives above, in `cnnrun.model.checkpoints`.

May import: the base modules (`errors`, `atomic`, `report`), `config`, `data`'s plain types. Nothing above.
"""
