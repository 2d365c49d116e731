"""The runner: a command's runs (sweep, cluster, profile), papermill kernels and the book.

`runner.profile` runs a profile's experiments, `runner.book` builds its pages and site,
`runner.papermill` executes a notebook in a quiet kernel, `runner.sweep` runs one
experiment's grid runs (cached, staged, resumable) and `runner.cluster` sends them to Dask.
"""

from vgg_transfer.runner import book, lock, papermill, plan, profile, sweep  # noqa: F401  (the API)
