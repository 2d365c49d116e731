"""Transfer learning with VGG16 on CIFAR-10: scratch, frozen and fine-tuned regimes.

The package is the whole logic of the report: data, regimes, models, training, evaluation,
the run record, the page side (selection, statistics, sentences, tables, figures), the
experiment runner and the command line. Notebooks only call into it.
"""

__version__ = "0.1.0"

CLASS_NAMES = (
    "airplane", "automobile", "bird", "cat", "deer",
    "dog", "frog", "horse", "ship", "truck",
)
