"""Training: the Trainer (the only thing that trains) and what surrounds a fit.

- `trainer`: `Trainer.new(experiment)` / `Trainer.from_run(folder)` → `fit` → `finish`.
- `callbacks`: the run recorder and the configured Keras callbacks; `tracking`: MLflow's copy of a run.
- `header`, `provenance`: what a run says about itself before and while it trains (`meta.json`).
- `seeds`: one experiment over N seeds; `sweep`: an Optuna study whose trials are Trainers.

May import: everything below (`config`, `devices`, `data`, `run_folder`, `model`). Nothing above.
"""
