"""Optuna sweeps through Hydra: a persistent, resumable study (study.py), the job's end of a trial that reports
each fold and obeys the pruner (trial.py), the sweeper that asks, launches and tells (sweeper.py), the sweep's
MLflow parent run (parent_run.py) and the callback that registers the champion (callbacks.py)."""
