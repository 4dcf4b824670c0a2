import os

# Tests never touch the network: the hub is off before anything imports huggingface_hub.
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ.setdefault("MPLBACKEND", "Agg")
if os.environ.get("PYTEST_XDIST_WORKER_COUNT"):
    # pytest-xdist workers share the cores: torch threads split between them (set before torch is imported), or
    # every worker starts one per core and all of them slow down together.
    os.environ.setdefault("OMP_NUM_THREADS",
                          str(max(1, (os.cpu_count() or 1) // int(os.environ["PYTEST_XDIST_WORKER_COUNT"]))))

import inspect
import subprocess
import sys
import re
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

REPO = Path(__file__).resolve().parent.parent
IMAGES = REPO / "images"

# --- tiers ---------------------------------------------------------------------------------------------------------
# Every test gets its markers from what it uses (pytest_collection_modifyitems below), so `-m unit` is the fast tier
# without anyone remembering to mark a test, and a unit test that builds a model fails (the guard below).
TIERS = {
    "unit": "no model: metrics, rules, decision tables, sampling, config and battery validation, parsing, CLI help",
    "model": "builds a network",
    "e2e": "a full run, a render or a PDF",
    "ray": "starts or joins a Ray cluster",
    "subprocess": "runs reportgen or a job in another process",
}
# Fixtures that run the battery (directly or through another fixture).
E2E_FIXTURES = {"lite_report", "lite0_small", "untrained_run", "budget_run", "same_architecture_run", "report_200",
                "hostile_run", "small_report", "torch_free_python", "broken_pair_run",
                "broken_pair_folder_run", "broken_checkpoint", "own_task", "own_task_run",
                "gate_run", "gate_battery"}
MODEL_FIXTURES = {"lite0", "photo", "models", "architecture"}
E2E_CALLS = re.compile(r"run_cli\(\s*(\*\w+|\"run\"|\"render\"|\"merge\"|\"compare\"|\"backbones\", \"\w)"
                       r"|_run_small\(|render_report\("
                       r"|render_comparison\(|run_shard\(|run_battery\(|merge_and_score\(|_small_run\(|_run_for\(|getfixturevalue\(")
MODEL_CALLS = re.compile(r"create_model|load_model|auto_backbone|choose_unit|analyse_backbone|measure_cost|latency_ms\("
                         r"|road\(|resolve_backbones|torch\.nn\.|session_costs\(|time_in_sessions\(|without\(|count_macs|\bmodels\(")
SUBPROCESS_CALLS = re.compile(r"subprocess\.|Popen|submitit|_reportgen\(")


def _kinds(item) -> set:
    source = inspect.getsource(item.function)
    kinds = set()
    if item.module.__name__.endswith("test_ray") and "cluster" in item.fixturenames:
        kinds.add("ray")
    if SUBPROCESS_CALLS.search(source) or "torch_free_python" in item.fixturenames:
        kinds.add("subprocess")
    if E2E_FIXTURES & set(item.fixturenames) or E2E_CALLS.search(source):
        kinds.add("e2e")
    if MODEL_FIXTURES & set(item.fixturenames) or MODEL_CALLS.search(source):
        kinds.add("model")
    return kinds or {"unit"}


def pytest_configure(config):
    for name, what in TIERS.items():
        config.addinivalue_line("markers", f"{name}: {what}")


# --- the order the two pytest-xdist workers take the files in -------------------------------------------------------
# Seconds per file measured on this 2-core machine in one run of the suite (two workers, 2026-12-07); files not listed
# take under 8 s. The longest files are handed out first, so the files that finish the run are short ones and neither
# worker idles at the end while the other finishes a long file (longest-processing-time-first scheduling). A stale
# number costs balance only, never a result.
FILE_SECONDS = {
    "test_decision.py": 111, "test_ray.py": 63, "test_missing_values.py": 49, "test_degenerate.py": 36,
    "test_large_sets.py": 34, "test_torch_free.py": 29, "test_cli.py": 27, "test_own_task.py": 22,
    "test_resume.py": 20, "test_shard.py": 19, "test_engine.py": 16, "test_registry.py": 15,
    "test_missing_values_rest.py": 14, "hostile/test_hostile_render_and_faults.py": 14,
    "hostile/test_hostile_images.py": 13, "test_output_folder.py": 13, "test_progress_lines.py": 12,
    "test_beyond_paper.py": 12, "test_timing_stage.py": 12, "test_battery.py": 11, "test_auto_backbones.py": 11,
    "test_formats.py": 8, "test_transfer_folds.py": 8,
}
# Within a file, the tests of the README's lite run first: the worker that takes the file starts that shared run (the
# longest) at once, rather than after the file's other tests while the other worker waits on its lock.
FIRST_IN_FILE = {"lite_report"}


def _file_key(item) -> str:
    return item.nodeid.split("::")[0].removeprefix("tests/")


def pytest_collection_modifyitems(config, items):
    for item in items:
        for kind in _kinds(item):
            item.add_marker(getattr(pytest.mark, kind))
    # Stable: the files in FILE_SECONDS order (the rest as collected), and the tests of a file as written apart from
    # FIRST_IN_FILE. pytest-xdist keeps this order (--no-loadscope-reorder, pyproject.toml).
    items.sort(key=lambda item: (-FILE_SECONDS.get(_file_key(item), 0),
                                 0 if FIRST_IN_FILE & set(item.fixturenames) else 1))


@pytest.fixture(autouse=True)
def _unit_tests_build_no_model(request, monkeypatch):
    """A test marked unit (by what it uses) that builds a network or runs the battery is misclassified: fail it."""
    if request.node.get_closest_marker("unit") is None:
        yield
        return
    import timm

    def refuse(*args, **kwargs):
        raise AssertionError(f"{request.node.nodeid} is marked unit but builds a model; use a model fixture or call")
    monkeypatch.setattr(timm, "create_model", refuse)
    yield


@pytest.fixture(scope="session")
def architecture():
    """``architecture(timm_id)``: a private copy of an untrained network, each architecture built once per session
    (VGG19 takes a second to initialise; a copy a fraction of that). The weights are seeded, so the same in every
    test; a test may change its copy."""
    import copy

    import timm
    import torch

    built = {}

    def build(timm_id: str) -> "torch.nn.Module":
        if timm_id not in built:
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(0)
                built[timm_id] = timm.create_model(timm_id, pretrained=False).eval()
        return copy.deepcopy(built[timm_id])
    return build


def message_lines(output: str) -> list[str]:
    """The lines of a command's output that are not progress: a user error must be one such line. Progress lines
    (``reportgen: starting: ...``, the device, the image check) come first and ``--quiet`` silences them."""
    return [line for line in output.strip().splitlines()
            if not line.startswith("reportgen: ") or line.startswith(("reportgen: error", "reportgen: internal error"))]


def run_cli(*args):
    from reportgen.cli import main

    return CliRunner().invoke(main, list(args), catch_exceptions=False)


# --- shared inputs and runs (read-only: a test that changes a run copies its folder first) ----------------------------

@pytest.fixture(scope="session")
def small_image_dir(tmp_path_factory) -> Path:
    """Three curated images with their manifest rows (a real photo, two controlled)."""
    folder = tmp_path_factory.mktemp("images")
    keep = ("chelsea.png", "controlled_cat_small_clean.png", "controlled_espresso_large_cluttered.png")
    lines = (IMAGES / "annotations.csv").read_text().splitlines()
    rows = [lines[0]] + [line for line in lines[1:] if line.split(",")[0] in keep]
    (folder / "annotations.csv").write_text("\n".join(rows) + "\n")
    for name in keep:
        shutil.copy(IMAGES / name, folder / name)
    return folder


# The timing budget of the test runs that test something else than the latency, a fifth of the default (the README's
# lite run and the progress-line test time with the default 1 s; the timing-stage test checks that this one is used).
QUICK_TIMING = "latency_budget_s = 0.2\n"
FAST = ("[analysis]\nsanity_check = false\ncorruption_max_images = 0\nfaithfulness_max_images = 0\n"
        "bootstrap_samples = 200\n" + QUICK_TIMING)


@pytest.fixture(scope="session")
def fast_battery(tmp_path_factory) -> Path:
    """A battery file for runs that test something else than the sanity check, corruptions or faithfulness: those
    off, fewer bootstrap draws, a fifth of the timing budget (every code path still runs; only the work is smaller)."""
    path = tmp_path_factory.mktemp("fast") / "fast.toml"
    path.write_text(FAST)
    return path


def shared_run(request, tmp_path_factory, name: str, *args: str, expect: int = 0, extra=lambda out: ()) -> Path:
    """The folder of ``reportgen run ARGS --out FOLDER``, run once for the whole session: with pytest-xdist the
    workers share it (the first to ask runs it under a file lock; the others wait and read it). Read-only.
    ``expect``: the exit code the run must end with; ``extra(out)``: more arguments that name files in the folder."""
    def run(out: Path) -> None:
        result = run_cli(*args, *extra(out), "--out", str(out))
        assert result.exit_code == expect, result.output

    if not hasattr(request.config, "workerinput"):  # one process: an ordinary session folder
        out = tmp_path_factory.mktemp(name) / "out"
        run(out)
        return out
    from filelock import FileLock

    root = tmp_path_factory.getbasetemp().parent / f"shared-{name}"  # this session's, shared by its workers
    with FileLock(f"{root}.lock"):
        if not (root / "done").exists():
            shutil.rmtree(root, ignore_errors=True)
            root.mkdir()
            run(root / "out")
            (root / "done").write_text("")
    return root / "out"


@pytest.fixture(scope="session")
def lite_report(request, tmp_path_factory) -> Path:
    """The README's offline command, once per session: the full lite preset on the curated set."""
    return shared_run(request, tmp_path_factory, "lite", "run", "--preset", "lite", "--quiet",
                      "--format", "html,pdf,md,json")


LITE0_SMALL = ("run", "--preset", "lite", "--backbone", "efficientnet_lite0", "--batch-size", "1")


@pytest.fixture(scope="session")
def lite0_small(request, tmp_path_factory, small_image_dir, fast_battery) -> Path:
    """One small real run (Lite0, three images; every format but the PDF, which the lite run's tests read) for the
    tests that need some finished run."""
    return shared_run(request, tmp_path_factory, "lite0-small", *LITE0_SMALL, "--config", str(fast_battery),
                      "--images", str(small_image_dir), "--quiet", "--format", "html,md,json")


@pytest.fixture(scope="session")
def untrained_run(request, tmp_path_factory, small_image_dir) -> Path:
    """One untrained run of two paper backbones (deeper and attention), every format."""
    battery = tmp_path_factory.mktemp("untrained-battery") / "battery.toml"
    battery.write_text("[analysis]\n" + QUICK_TIMING)
    return shared_run(request, tmp_path_factory, "untrained", "run", "--backbone", "resnet50", "--backbone",
                      "deit_small", "--weights", "random", "--images", str(small_image_dir), "--quiet",
                      "--config", str(battery), "--format", "html,pdf,md,json")


def copy_run(run: Path, target: Path) -> Path:
    """A private copy of a shared run's folder, for a test that changes it."""
    shutil.copytree(run, target, ignore=shutil.ignore_patterns(".reportgen.lock", ".reportgen.owner"))
    return target


def aggregate_row(rows, scope, name, role, group, metric):
    """The aggregate row of a metrics JSON document (plain dicts), or None."""
    return next((r for r in rows if (r["scope"], r["name"], r["role"], r["group"], r["metric"])
                 == (scope, name, role, group, metric)), None)


# --- a broken checkpoint beside the intact weights (issue 27) -----------------------------------------------------

@pytest.fixture(scope="session")
def broken_checkpoint(tmp_path_factory) -> Path:
    """Lite0's weights with one stage zeroed (``blocks.5.*``), as a broken training run or a bad export leaves them,
    and a battery file that puts it beside the stock weights: ``lite0-stock`` and ``lite0-new``."""
    import timm
    import torch
    from safetensors.torch import save_file

    from reportgen.analysis.models import load_lite_checkpoint
    from reportgen.analysis.weights import lite_package_file

    folder = tmp_path_factory.mktemp("broken")
    model = timm.create_model("tf_efficientnet_lite0", pretrained=False)
    load_lite_checkpoint(model, str(lite_package_file("0")))
    state = {k: (torch.zeros_like(v) if k.startswith("blocks.5.") else v).contiguous()
             for k, v in model.state_dict().items()}
    save_file(state, folder / "broken.safetensors")
    (folder / "battery.toml").write_text(
        '[[backbone]]\nid = "efficientnet_lite0"\nname = "lite0-stock"\n\n'
        f'[[backbone]]\nid = "efficientnet_lite0"\nname = "lite0-new"\ncheckpoint = "{folder / "broken.safetensors"}"\n')
    return folder / "battery.toml"


@pytest.fixture(scope="session")
def broken_pair_run(request, tmp_path_factory, broken_checkpoint) -> Path:
    """The broken checkpoint beside the intact weights on the curated images, every analysis on (each on a few
    images: each analysis meets the broken model's zero heatmaps; the sample sizes are not what is tested), every
    format."""
    battery = tmp_path_factory.mktemp("broken-every") / "battery.toml"
    battery.write_text(broken_checkpoint.read_text() + "\n[analysis]\nsanity_max_images = 4\ncorruption_max_images = 4\n"
                       "faithfulness_max_images = 4\nbootstrap_samples = 200\n" + QUICK_TIMING)
    return shared_run(request, tmp_path_factory, "broken-pair", "run", "--config", str(battery), "--quiet",
                      "--format", "html,pdf,md,json")


@pytest.fixture(scope="session")
def class_folder_set(tmp_path_factory) -> Path:
    """24 photos in class folders named by WordNet id, as a user's validation folder (tools/synthetic_set.py): more
    than degenerate_min_images, so the broken pair's warning has enough images to rest on."""
    import subprocess
    import sys

    folder = tmp_path_factory.mktemp("folders") / "val"
    subprocess.run([sys.executable, str(REPO / "tools" / "synthetic_set.py"), str(folder), "--count", "24",
                    "--layout", "wnid"], check=True, capture_output=True)
    return folder


@pytest.fixture(scope="session")
def broken_pair_folder_run(request, tmp_path_factory, broken_checkpoint, class_folder_set, fast_battery) -> Path:
    """The same pair on a class-folder set (sanity check, corruptions and faithfulness off: fast_battery)."""
    battery = tmp_path_factory.mktemp("broken-fast") / "battery.toml"
    battery.write_text(broken_checkpoint.read_text() + "\n" + FAST)
    return shared_run(request, tmp_path_factory, "broken-pair-folders", "run", "--config", str(battery), "--images",
                      str(class_folder_set), "--quiet", "--format", "md,json")


# --- the user's own task (issue 25) -------------------------------------------------------------------------------

NAMES = ("cats", "coffee", "rockets")
PERMUTATION = (1, 2, 0)  # the permuted head's output j is class PERMUTATION[j]


def own_set(folder, count, seed, classes=3):
    subprocess.run([sys.executable, str(REPO / "tools" / "synthetic_set.py"), str(folder), "--count", str(count),
                    "--layout", "own", "--classes", str(classes), "--seed", str(seed)], check=True,
                   capture_output=True)
    return folder


def _lite0():
    import timm

    from reportgen.analysis.models import load_lite_checkpoint
    from reportgen.analysis.weights import lite_package_file

    model = timm.create_model("tf_efficientnet_lite0", pretrained=False)
    load_lite_checkpoint(model, str(lite_package_file("0")))
    return model.eval()


def features_of(model, folder):
    """Pooled pre-logit features and class index of every image of a class-folder set, as timm evaluates it."""
    import numpy as np
    import timm.data
    import torch
    from PIL import Image

    transform = timm.data.create_transform(**timm.data.resolve_data_config({}, model=model))
    rows, labels = [], []
    with torch.no_grad():
        for index, name in enumerate(sorted(p.name for p in folder.iterdir() if p.is_dir())):
            for path in sorted((folder / name).glob("*.jpg")):
                x = transform(Image.open(path).convert("RGB"))[None]
                rows.append(model.forward_head(model.forward_features(x), pre_logits=True)[0].numpy())
                labels.append(index)
    return np.array(rows), np.array(labels)


@pytest.fixture(scope="session")
def own_task(tmp_path_factory):
    """A validation folder of three user-named classes (12 images each), and Lite0 fine-tuned for them in the test
    (its head fit on another folder of the same classes) saved with its class names, plus the same checkpoint with
    the head's outputs in another order."""
    import torch
    from safetensors.torch import save_file
    from sklearn.linear_model import LogisticRegression

    from reportgen.inputs.labels import label_names_metadata

    root = tmp_path_factory.mktemp("own-task")
    own_set(root / "val", 36, seed=0)
    train = own_set(root / "train", 45, seed=1)
    model = _lite0()
    features, labels = features_of(model, train)
    probe = LogisticRegression(C=1.0, max_iter=2000).fit(features, labels)
    model.reset_classifier(3)
    with torch.no_grad():
        model.classifier.weight.copy_(torch.tensor(probe.coef_, dtype=torch.float32))
        model.classifier.bias.copy_(torch.tensor(probe.intercept_, dtype=torch.float32))
    state = {k: v.contiguous() for k, v in model.state_dict().items()}
    save_file(state, root / "tuned.safetensors", metadata=label_names_metadata(NAMES))
    permuted = dict(state)
    permuted["classifier.weight"] = state["classifier.weight"][list(PERMUTATION)].contiguous()
    permuted["classifier.bias"] = state["classifier.bias"][list(PERMUTATION)].contiguous()
    save_file(permuted, root / "permuted.safetensors", metadata=label_names_metadata(NAMES))
    battery = root / "battery.toml"
    battery.write_text(
        '[[backbone]]\nid = "efficientnet_lite0"\nname = "lite0-probe"\n\n'
        f'[[backbone]]\nid = "efficientnet_lite0"\nname = "lite0-tuned"\ncheckpoint = "{root / "tuned.safetensors"}"\n\n'
        f'[[backbone]]\nid = "efficientnet_lite0"\nname = "lite0-permuted"\n'
        f'checkpoint = "{root / "permuted.safetensors"}"\n\n' + FAST)
    return root


@pytest.fixture(scope="session")
def own_task_run(request, tmp_path_factory, own_task):
    """The three own-task candidates on the validation folder; no PDF (no test reads this run's: the lite run's and
    the broken pair's are read, and test_missing_values renders this one's)."""
    return shared_run(request, tmp_path_factory, "own-task", "run", "--config", str(own_task / "battery.toml"),
                      "--images", str(own_task / "val"), "--quiet", "--format", "html,md,json")


# --- the gate (issue 26) --------------------------------------------------------------------------------------------

GATE = ('\n[decision]\nmin_top1 = 0.05\n\n[gate]\nchampion = "lite0-stock"\nmin_p_better = 0.9\n'
        'max_accuracy_drop = 0.0\nconstraints = "pass"\n')


@pytest.fixture(scope="session")
def gate_battery(tmp_path_factory, broken_checkpoint):
    """lite0-stock (the champion), lite0-twin (the same weights under another name) and lite0-new (one stage zeroed)."""
    path = tmp_path_factory.mktemp("gate") / "battery.toml"
    path.write_text(broken_checkpoint.read_text() + '\n[[backbone]]\nid = "efficientnet_lite0"\nname = "lite0-twin"\n'
                    + FAST + GATE)
    return path


@pytest.fixture(scope="session")
def gate_run(request, tmp_path_factory, gate_battery):
    """``run --gate`` (it ends with exit 8: the damaged challenger fails), its JUnit file in the folder as gate.xml;
    the tests judge its saved results again."""
    return shared_run(request, tmp_path_factory, "gate", "run", "--config", str(gate_battery), "--quiet", "--format",
                      "md,json", "--gate", expect=8, extra=lambda out: ("--junit", str(out / "gate.xml")))
