"""The default report compares its regimes at equal compute: the training FLOPs each of the
quick profile's compared runs can spend, known from the file before anything trains."""

from vgg_transfer.run.flops import planned_range
from vgg_transfer.run.pipeline import planned_flops
from vgg_transfer.spec.profiles import load_experiments, profile_compare, resolve_profile

TRAIN_IMAGES = 50_000  # the CIFAR-10 training set; each run holds out its validation split


def test_quick_compares_its_regimes_within_ten_percent_of_one_budget(tiny_cifar):
    spec = load_experiments()
    env = {"CIFAR10_DIR": str(tiny_cifar), "WEIGHTS": "hed-bsds500"}
    compared = [p.cfg for p in resolve_profile(spec, "quick", env=env)
                if p.experiment in profile_compare(spec, "quick")]
    assert [c.regime for c in compared] == ["scratch", "frozen", "finetune", "partial"]
    spans = {c.name: planned_flops(c, TRAIN_IMAGES - c.val_size) for c in compared}
    least = min(low for low, _ in spans.values())
    most = max(high for _, high in spans.values())
    assert most <= 1.10 * least, spans
    # the frozen regime's spend: the base's outputs for all 50,000 images (31.3 TFLOPs) and
    # its head to a plateau; it sets the budget the others train to
    low, high = spans["frozen"]
    assert 31e12 < low < high < 33e12


def test_a_planned_range_bounds_what_a_budget_and_a_plateau_allow():
    per_image = {"block1": 10, "head": 1}  # forward FLOPs of one image
    # one phase, all of it training (3x forward per image), 100 images, 10 validation, 5 epochs
    epoch = 3 * 11 * 100 + 11 * 10
    assert planned_range(per_image, [(0, 0, 5, None)], 100, 10, 10) == (5 * epoch, 5 * epoch)
    # a plateau with patience 2 may end it after three epochs
    assert planned_range(per_image, [(0, 0, 5, 2)], 100, 10, 10) == (3 * epoch, 5 * epoch)
    # a budget ends it in whole batches: two epochs and three of the third's ten batches
    budget = 2 * epoch + 11 * 10 + 3 * 11 * 35
    assert planned_range(per_image, [(0, 0, 5, None)], 100, 10, 10, budget=budget) == \
        (2 * epoch + 11 * 10 + 3 * 11 * 30,) * 2
    # a frozen block 1 on cached outputs: its forward pass once per image, then the head only
    cached = planned_range(per_image, [(1, 1, 2, None)], 100, 10, 10)
    assert cached == (10 * 110 + 2 * (3 * 100 + 10),) * 2
