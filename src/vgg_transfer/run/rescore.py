"""Score a run's saved model on another test set, beside the run and apart from its metrics.

    python -m vgg_transfer evaluate outputs/quick/runs/finetune --data ~/cifar-10-batches-py

reads `model.keras` from the run folder and the `test_batch` of any folder in the
cifar-10-batches-py layout (the full 10,000-image test set, say), and writes
`evaluations/<data hash>.json` into the run folder: accuracy with its 95% Wilson interval,
the test-set size, loss, calibration error, per-class accuracy and what was scored on what.
The run's own metrics.json is never touched.

A saved model loads anywhere with `keras.saving.load_model(path, compile=False)` once
`vgg_transfer.run.models` is imported: that registers its one custom layer, `VGGPreprocess`.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from vgg_transfer import files
from vgg_transfer.core.data import TEST_FILE, DataError, read_batch, sha256_file
from vgg_transfer.core.metrics import evaluate_predictions
from vgg_transfer.record import MODEL_FILE, RecordError
from vgg_transfer.run.features import predict_into


def load_saved_model(run_dir: Path):
    """The trained model of a run folder (`save_model` must have been on)."""
    import keras

    from vgg_transfer.run import models  # noqa: F401  registers VGGPreprocess for loading

    path = Path(run_dir) / MODEL_FILE
    if not path.is_file():
        raise RecordError(f"{run_dir}: no {MODEL_FILE} (the run did not save its model; "
                          "re-run it with save_model: true)")
    return keras.saving.load_model(path, compile=False)  # scoring needs no optimizer


def evaluate_saved(run_dir: str | Path, data_dir: str | Path, batch_size: int = 256) -> Path:
    """Score the saved model on `data_dir`/test_batch; returns the file written."""
    run_dir, data_dir = Path(run_dir), Path(data_dir).expanduser().resolve()
    test_file = data_dir / TEST_FILE
    if not test_file.is_file():
        raise DataError(f"{data_dir}: no {TEST_FILE} (expected a cifar-10-batches-py folder)")
    images, labels = read_batch(test_file)  # an untrusted file: checked before anything loads
    model = load_saved_model(run_dir)
    start = time.perf_counter()
    probs = predict_into(model, images.astype("float32"), batch_size)
    digest = sha256_file(test_file)
    result = {
        "run": run_dir.name,
        "model_sha256": sha256_file(run_dir / MODEL_FILE),
        "data": {"path": str(data_dir), "file": TEST_FILE, "sha256": digest,
                 "test_n": int(len(labels)),
                 "per_class": np.bincount(labels, minlength=10).tolist()},
        **evaluate_predictions(probs, labels),
        "seconds": time.perf_counter() - start,
        "evaluated": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    out = run_dir / "evaluations" / f"{TEST_FILE}-{digest[:12]}.json"
    files.write_json(out, result)
    return out
