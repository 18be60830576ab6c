"""Tasks: what a finished run is used for, one module per command.

- `evaluate`, `predict`, `export`: judge a checkpoint, predict pictures, export for serving.
- `inspect`: an experiment's model, built but not trained.
- `runs_table`, `compare`: many run folders side by side.

May import: every package below (`explain` and `teach` included). Only `cnnrun.cli` imports tasks.
"""
