"""What both sides read without a backend: CIFAR-10 from its files (`data`) and the measures
of a run's predictions (`metrics`). Nothing here imports Keras; a run's key covers this code
as it covers run/ (`run.fingerprint`)."""
