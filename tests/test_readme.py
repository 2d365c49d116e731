"""The README's documents tested against the code: its profile table lists every profile of
experiments.yaml with the number of runs that profile resolves to."""

import re
from pathlib import Path

from vgg_transfer.spec.profiles import load_experiments, profile_names, resolve_profile

ROOT = Path(__file__).resolve().parents[1]


def _profile_table() -> dict[str, list[str]]:
    """The README's profile table: profile -> its cells (training images, epochs, runs, ...)."""
    text = (ROOT / "README.md").read_text()
    head = text.index("| profile | training images | epochs | runs | meant for |")
    rows = {}
    for line in text[head:].splitlines()[2:]:
        if not line.startswith("| `"):
            break
        cells = [cell.strip() for cell in line.strip("|").split("|")]
        rows[cells[0].strip("`")] = cells[1:]
    return rows


def test_the_readme_profile_table_has_every_profile_and_its_runs(tiny_cifar):
    spec = load_experiments()
    env = {"CIFAR10_DIR": str(tiny_cifar), "WEIGHTS": "hed-bsds500"}
    table = _profile_table()
    assert list(table) == profile_names(spec)
    for profile, cells in table.items():
        assert int(cells[2]) == len(resolve_profile(spec, profile, env=env)), profile


def test_the_readme_gives_each_profile_timing_with_the_cpu_it_was_measured_on():
    spec_text = (ROOT / "experiments.yaml").read_text()
    for profile, cells in _profile_table().items():
        minutes = re.findall(r"(\d+) min on ([^,|(]+)", cells[3])
        for figure, cpu in minutes:  # the same figure and machine in experiments.yaml
            assert f"{figure} min on {cpu.strip()}" in spec_text, (profile, figure, cpu)


def _study_item(title: str) -> str:
    text = (ROOT / "README.md").read_text()
    start = text.index(f"**{title}**")
    return text[start:text.index("\n", text.index(".\n", start) + 1)]


def _numbers(text: str) -> set[int]:
    return {int(n.replace(",", "")) for n in re.findall(r"\b\d{1,3}(?:,\d{3})*\b", text)}


def _values(spec: dict, profile: str, experiments: list[str], key: str, env: dict) -> set:
    return {getattr(p.cfg, key) for p in resolve_profile(spec, profile, env=env)
            if p.experiment in experiments}


def test_the_readme_studies_name_only_sizes_the_profiles_hold(tiny_cifar):
    spec = load_experiments()
    env = {"CIFAR10_DIR": str(tiny_cifar), "WEIGHTS": "hed-bsds500"}
    sizes = _values(spec, "study_gpu", ["scratch_bn", "frozen", "two_phase"], "train_size", env)
    epochs = _values(spec, "study_gpu", ["scratch_bn", "two_phase"], "epochs", env)
    sizes = {45_000 if s is None else s for s in sizes}
    data = _study_item("Data efficiency").split("log axis")[0]
    assert _numbers(data.split("(", 2)[2]) == sizes
    scratch_epochs = _study_item("Data efficiency").split("(", 3)[3].split("epochs")[0]
    assert _numbers(scratch_epochs) == epochs
    depth = _study_item("How deep to fine-tune").split("equal compute):")[1]
    blocks = _values(spec, "study_gpu", ["depth"], "unfreeze_from", env)
    assert _numbers(depth.split("for")[0]) == blocks
    assert _numbers(depth.split("for")[1].split("epochs")[0]) == \
        _values(spec, "study_gpu", ["depth"], "epochs", env)
    resolution = _study_item("Input resolution")
    study, gpu = resolution.split("(`study`;")
    assert _numbers(study.split("heads at")[1]) == \
        _values(spec, "study", ["resolution"], "image_size", env)
    assert _numbers(gpu.split("in `study_gpu`")[0]) == \
        _values(spec, "study_gpu", ["resolution"], "image_size", env)
