"""Training with Lightning, a thin layer around the plain `AnomalyCLIP`:

* `module`: loss, optimiser, schedule, per-epoch evaluation, checkpoint metadata
* `data`: the training loaders and the validation videos
* `callbacks`: checkpoints and files kept each epoch, progress
* `checkpoint_io`: durable checkpoint writes, safe reads
* `loggers`: the CSV and the optional tracker (TensorBoard, MLflow)
* `rng`: every random stream, saved and restored for exact resume
* `init_from`: starting from released weights
* `run`: `train(cfg, out)`
"""
