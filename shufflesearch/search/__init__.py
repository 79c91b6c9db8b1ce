"""Budget-constrained architecture search with Optuna: study files, space, workers, storage."""
