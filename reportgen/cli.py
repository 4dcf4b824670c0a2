"""Command line. Thin: parsing, messages and exit codes; the work happens in the package.
Heavy imports (torch, timm, weasyprint) happen inside commands so --help stays instant."""
from __future__ import annotations

import json
import sys
import traceback
from pathlib import Path

import click

from .errors import OutputError, ReportgenError, UsageError
from .inputs.label_space import LABEL_READINGS  # light: the option's choices

EXIT_CODES = """Exit codes: 0 success; 1 internal error; 2 usage; 3 bad input data;
4 weights missing / offline; 5 output folder problem; 6 out of GPU memory after retrying at half the
batch size; 7 shards failed on Ray after their retries (no report written); 8 the [gate] failed (the
report is written); 130 interrupted."""


def _fail(exc: ReportgenError, debug: bool):
    if debug:
        traceback.print_exc()
    click.echo(f"reportgen: error: {exc}", err=True)
    sys.exit(exc.exit_code)


class ReportgenGroup(click.Group):
    def invoke(self, ctx):
        debug = "--debug" in sys.argv
        try:
            return super().invoke(ctx)
        except ReportgenError as exc:
            _fail(exc, debug)
        except (click.ClickException, click.exceptions.Exit, click.exceptions.Abort, SystemExit):
            raise
        except KeyboardInterrupt:
            click.echo("reportgen: interrupted; finished backbones' files are complete, nothing half-written.", err=True)
            sys.exit(130)
        except Exception:
            if debug:
                raise
            click.echo(f"reportgen: internal error: {sys.exc_info()[1]!r} — please report it with the output of "
                       "the same command run with --debug.", err=True)
            sys.exit(1)


@click.group(cls=ReportgenGroup, epilog=EXIT_CODES)
@click.version_option(package_name="reportgen")
def main():
    """Turn the choice of a vision backbone into evidence: Grad-CAM, weight and feature analyses of
    ImageNet backbones, rendered as an HTML and PDF report.

    \b
    Example (offline, real weights):
      reportgen run --preset lite
    """


def _formats(text: str) -> tuple[str, ...]:
    from .report.formats import parse_formats

    return parse_formats(text)


FORMAT_OPTION = click.option("--format", "formats", default="html,pdf", show_default=True, metavar="LIST",
                             help="Report formats, comma-separated: html, pdf, md (report.md + figures/), "
                                  "json (metrics.json with every number and verdict).")


@main.command(epilog=EXIT_CODES)
@click.option("--config", "config_path", type=click.Path(path_type=Path), default=None,
              help="Battery file (TOML; `reportgen init` writes an example). Flags override it.")
@click.option("--preset", default="paper", show_default=True, help="Backbone preset: paper or lite.")
@click.option("--backbone", "backbones", multiple=True, metavar="NAME",
              help="Run this backbone: a registry name, or any timm model id (layers then chosen automatically). "
                   "Repeatable; replaces the preset.")
@click.option("--images", "images_dir", type=click.Path(path_type=Path), default=None,
              help="Image folder: class folders (ImageNet classes or your own, e.g. val/ants, val/bees), images + "
                   "annotations.csv, or VOC files. Default: the curated set in images/.")
@click.option("--labels", "labels_file", type=click.Path(path_type=Path), default=None, metavar="FILE",
              help="Your class names in the heads' output order: one per line (line i = logit i), or JSON (a list, "
                   "or id2label). Default: names stored with a checkpoint, else the folder names, sorted.")
@click.option("--label-reading", "label_reading", type=click.Choice([str(r) for r in LABEL_READINGS]), default="auto",
              show_default=True, help="How the class names of the folders (or annotations.csv) are read: "
              + "; ".join(f"{reading}: {meaning}" for reading, meaning in LABEL_READINGS.items()) + ".")
@click.option("--train-images", "train_dir", type=click.Path(path_type=Path), default=None, metavar="DIR",
              help="Labelled images (class folders) to fit the linear probe on; --images is then scored. Default: "
                   "stratified cross-validation on --images.")
@click.option("--weights", type=click.Choice(["pretrained", "random"]), default="pretrained", show_default=True,
              help="pretrained, or random to run untrained models on purpose (report is bannered).")
@click.option("--checkpoint", "checkpoints", multiple=True, metavar="NAME=PATH",
              help="Use this .safetensors file for backbone NAME. Repeatable.")
@click.option("--trust-pickle", is_flag=True,
              help="Also accept pickle checkpoints (.pth/.pt/.bin), loaded with torch.load(weights_only=True).")
@click.option("--out", "out_dir", type=click.Path(path_type=Path), default=Path("output"), show_default=True,
              help="Output folder: report.html, report.pdf, results/.")
@click.option("--device", type=click.Choice(["cpu", "cuda", "auto"]), default="auto", show_default=True,
              help="auto: CUDA when a GPU is visible, else the CPU (the run prints the device chosen).")
@click.option("--batch-size", type=click.IntRange(1, 1024), default=8, show_default=True,
              help="Images per forward pass; lower it to use less memory.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--offline", is_flag=True, help="Never contact the hub (as HF_HUB_OFFLINE=1).")
@click.option("--force", is_flag=True, help="Write into a non-empty --out that holds no reportgen results.")
@click.option("--fresh", is_flag=True, help="Ignore saved per-backbone results and recompute everything.")
@click.option("--json", "as_json", is_flag=True,
              help="Print a machine-readable summary (paths, per-backbone status, timings) on stdout.")
@click.option("--quiet", is_flag=True, help="No progress messages.")
@click.option("--no-sanity-check", "no_sanity", is_flag=True,
              help="Skip the model-parameter randomisation test (saves about three CAM passes per backbone).")
@click.option("--executor", type=click.Choice(["local", "ray"]), default="local", show_default=True,
              help="local: this process. ray: (backbone x image slice) tasks on Ray, merged exactly "
                   "(pip install -e '.[ray]'; images and --out on a filesystem every worker mounts).")
@click.option("--ray-address", default=None, metavar="HOST:PORT",
              help="Join this Ray cluster (started with `ray start --head`). Default: a local Ray instance.")
@click.option("--shard-size", type=click.IntRange(1), default=256, show_default=True,
              help="Images per Ray task (rounded up to a multiple of the batch size).")
@click.option("--gate", "gate", is_flag=True,
              help="After the report, judge the battery file's [gate] (champion against challengers): exit 8 when "
                   "it fails.")
@click.option("--junit", "junit", type=click.Path(path_type=Path), default=None, metavar="FILE",
              help="With --gate: also write the gate as JUnit XML (one test case per challenger and condition).")
@FORMAT_OPTION
@click.option("--debug", is_flag=True, help="Show tracebacks.")
def run(config_path, force, as_json, quiet, gate, junit, **_options):
    """Run the analysis battery and write the report.

    \b
    Examples:
      reportgen run --preset lite                       # offline, real ImageNet weights
      reportgen run --preset lite --images val          # your classes: val/ants/*.jpg, val/bees/*.jpg
      reportgen run --preset lite --images val --checkpoint lite0=tuned.safetensors --labels classes.txt
      reportgen run --backbone resnet50 --backbone deit_small
      reportgen run --backbone convnext_atto --backbone resnet18 --weights random
      reportgen run --config battery.toml --out /tmp/report
      reportgen run --preset lite --executor ray --shard-size 64
      reportgen run --config battery.toml --gate --junit gate.xml   # CI: exit 8 when the challenger fails
    """
    if junit is not None and not gate:  # before the run, not after it
        raise UsageError("--junit writes the gate's result: pass --gate too.")
    from .inputs.battery import EMPTY, load_battery
    from .pipeline.request import resolve_request  # light: a bad file or flag is one line, before anything else

    ctx = click.get_current_context()
    given = {name for name in ctx.params
             if ctx.get_parameter_source(name) == click.core.ParameterSource.COMMANDLINE}
    request = resolve_request(load_battery(config_path) if config_path else EMPTY, ctx.params, given)
    if gate and not request.config.gate.enabled:  # before the run, not after it
        raise UsageError("--gate judges the battery file's [gate], and there is none (no champion named): add a "
                         "[gate] table to --config (`reportgen init` shows one), or drop --gate.")
    say = (lambda message: None) if quiet else (lambda message: click.echo(f"reportgen: {message}", err=True))
    # The first line comes before the heavy imports (numpy and the report's libraries, then torch, timm and
    # grad-cam: 10-20 s on a small machine), so the command is seen to have started.
    say(_starting(request))
    # Re-running the same command into the same --out reuses every unchanged backbone and re-renders.
    _check_output_folder(request.out_dir, force)
    distributed = request.executor.kind == "ray"
    if distributed:
        from .pipeline.distributed import check_ray_address, require_ray

        require_ray()
        if request.executor.address:
            check_ray_address(request.executor.address)  # in seconds, before any folder is made
    from .pipeline.execute import execute, prepare  # loads torch: after the cheap checks
    from .progress import BatchProgress

    from .results.lock import output_folder_lock

    with output_folder_lock(request.out_dir):
        prepared = prepare(request, say, decode=not distributed)  # says the device as soon as it is known
        say(f"{len(prepared.plans)} backbone(s), {len(prepared.image_set.records)} images, weights: "
            + ", ".join(f"{p.backbone.name}={p.source}" for p in prepared.plans))
        with BatchProgress(enabled=not quiet and not as_json and not distributed) as bars:
            result = execute(prepared, bars.message if not quiet else say, bars.update, say)
    results = request.out_dir / "results"
    if gate:
        from .report.ci import run_gate

        if not as_json:
            _echo_written(result.written, results)
        try:
            run_gate(results, junit, say=lambda line: click.echo(f"gate: {line}", err=True))
        finally:
            if as_json:
                _print_json(result, results)
        return
    if as_json:
        _print_json(result, results)
        return
    _echo_written(result.written, results)


def _print_json(result, results: Path) -> None:
    click.echo(json.dumps({
        "outputs": {kind: str(path) for kind, path in result.written.items()},
        "results": str(results),
        "backbones": result.outcome.status,
        "timings": result.outcome.timings,
        **({"shards": [shard.to_json() for shard in result.shards]} if result.shards is not None else {}),
    }, indent=1, sort_keys=True))


def _starting(request) -> str:
    chosen = (f"{len(request.backbones)} backbone(s) from --backbone" if request.backbones else
              f"the battery file's {len(request.battery.backbones)} backbone(s)" if request.battery.backbones else
              f"preset {request.preset}")
    return (f"starting: {chosen}, {request.weights_mode} weights, into {request.out_dir}; loading torch, timm and "
            "grad-cam (several seconds)")


def _echo_written(written: dict, results: Path | None = None) -> None:
    for kind, path in written.items():
        click.echo(f"{kind}: {path}")
    if results is not None:
        click.echo(f"results: {results}")


def _check_output_folder(out_dir: Path, force: bool) -> None:
    """A folder reportgen wrote before is updated in place (unchanged backbones are reused and the old
    report stays until the new one is complete); any other non-empty folder needs --force."""
    if not out_dir.exists():
        return
    if not out_dir.is_dir():
        raise OutputError(f"--out {out_dir} is a file; give a folder.")
    from .results.lock import LOCK_FILE, OWNER_FILE
    from .results.store import holds_reportgen_results

    ours = holds_reportgen_results(out_dir / "results")
    foreign = [p for p in out_dir.iterdir() if p.name not in (LOCK_FILE, OWNER_FILE)]
    if not ours and foreign and not force:
        raise OutputError(f"--out {out_dir} is not empty and holds no reportgen results (no results/results.json "
                          "of a reportgen run); choose another --out, or pass --force to write report.html, "
                          "report.pdf and results/ beside its files.")


@main.command(epilog=EXIT_CODES)
@click.argument("results_dir", type=click.Path(path_type=Path))
@click.option("--out", "out_dir", type=click.Path(path_type=Path), default=None,
              help="Where to write report.html and report.pdf. Default: the folder above RESULTS_DIR.")
@FORMAT_OPTION
@click.option("--debug", is_flag=True, help="Show tracebacks.")
def render(results_dir, out_dir, formats, debug):
    """Rebuild the HTML and PDF report from saved results, without torch.

    \b
    Example:
      reportgen render output/results --out /tmp/report
    """
    from .report.render import render_report
    from .results.lock import output_folder_lock

    out_dir = out_dir or Path(results_dir).resolve().parent
    with output_folder_lock(out_dir):
        _echo_written(render_report(results_dir, out_dir, _formats(formats)))


@main.command(epilog=EXIT_CODES)
@click.argument("results_dir", type=click.Path(path_type=Path))
@click.option("--junit", type=click.Path(path_type=Path), default=None, metavar="FILE",
              help="Write the gate as JUnit XML (GitHub Actions, GitLab and Jenkins display it).")
@click.option("--config", "config_path", type=click.Path(path_type=Path), default=None,
              help="A battery file whose [gate] replaces the one the run was made with.")
@click.option("--debug", is_flag=True, help="Show tracebacks.")
def gate(results_dir, junit, config_path, debug):
    """Judge champion against challengers on saved results (no torch, nothing re-measured): exit 0 when every
    condition of [gate] passes, 8 when one fails. Appends page 1 and the gate's table to $GITHUB_STEP_SUMMARY when
    it is set.

    \b
    Examples:
      reportgen gate output/results
      reportgen gate output/results --junit gate.xml --config gate.toml
    """
    from .report.ci import run_gate

    settings = None
    if config_path is not None:
        from .inputs.battery import load_battery

        settings = load_battery(config_path).analysis_config().gate
    run_gate(_results_folder(results_dir), junit, settings, say=click.echo)


@main.command(epilog=EXIT_CODES)
@click.argument("shards", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--out", "out_dir", type=click.Path(path_type=Path), required=True,
              help="Folder for the merged results/ and the report.")
@FORMAT_OPTION
@click.option("--debug", is_flag=True, help="Show tracebacks.")
def merge(shards, out_dir, formats, debug):
    """Merge results of `run_shard` jobs (one backbone x a slice of the images each) and render the report.

    \b
    Example:
      reportgen merge shards/resnet50-0 shards/resnet50-1 shards/deit-0 --out merged
    """
    from .pipeline.shards import merge_and_score
    from .report.render import render_report

    from .results.lock import output_folder_lock

    _check_output_folder(out_dir, force=False)
    with output_folder_lock(out_dir):
        results = merge_and_score(shards, out_dir)
        _echo_written(render_report(results, out_dir, _formats(formats)), results)


@main.command(epilog=EXIT_CODES)
@click.argument("run_a", type=click.Path(path_type=Path))
@click.argument("run_b", type=click.Path(path_type=Path))
@click.option("--out", "out_dir", type=click.Path(path_type=Path), default=Path("comparison"), show_default=True,
              help="Folder for compare.html and compare.pdf.")
@click.option("--format", "formats", default="html,pdf", show_default=True, metavar="LIST", help="html, pdf.")
@click.option("--debug", is_flag=True, help="Show tracebacks.")
def compare(run_a, run_b, out_dir, formats, debug):
    """Render two saved runs side by side with the differences in their numbers.

    \b
    Example:
      reportgen compare runs/candidate-a/results runs/candidate-b/results --out comparison
    """
    from .report.render import render_comparison

    chosen = _formats(formats)
    if not set(chosen) <= {"html", "pdf"}:
        raise UsageError("compare --format: choose html and/or pdf.")
    _echo_written(render_comparison(_results_folder(run_a), _results_folder(run_b), out_dir, chosen))


def _results_folder(path: Path) -> Path:
    """Accept a run's output folder or its results/ folder."""
    return path / "results" if (path / "results" / "results.json").is_file() else path


@main.command(epilog=EXIT_CODES)
@click.argument("path", type=click.Path(path_type=Path), default=Path("battery.toml"))
@click.option("--force", is_flag=True, help="Overwrite an existing file.")
@click.option("--debug", is_flag=True, help="Show tracebacks.")
def init(path, force, debug):
    """Write a commented example battery file.

    \b
    Example:
      reportgen init battery.toml && reportgen run --config battery.toml
    """
    from .inputs.battery import EXAMPLE
    from .results.store import atomic_write_bytes

    if path.exists() and not force:
        raise OutputError(f"{path} exists; pass --force to overwrite it or choose another path.")
    atomic_write_bytes(path, EXAMPLE.encode("utf-8"))
    click.echo(f"wrote {path}")


@main.command(epilog=EXIT_CODES)
@click.argument("names", nargs=-1, metavar="[TIMM_ID]...")
@click.option("--preset", default=None, help="Only this preset (paper or lite). Default: every backbone.")
@click.option("--offline", is_flag=True, help="Do not probe the hub when checking availability.")
@click.option("--debug", is_flag=True, help="Show tracebacks.")
def backbones(names, preset, offline, debug):
    """List backbones: name, timm id, family, layers, weights source and availability here. Given timm ids
    (registry or not), show the layers and family reportgen would use for them.

    \b
    Examples:
      reportgen backbones --preset paper
      reportgen backbones convnext_atto swin_tiny_patch4_window7_224
    """
    from .analysis.weights import plan_weights
    from .inputs import registry

    if names:
        from .analysis.autolayers import resolve_backbones

        rows = resolve_backbones("paper", names)
    else:
        try:
            rows = registry.preset(preset) if preset else registry.BACKBONES
        except registry.UnknownName as exc:
            raise UsageError(str(exc)) from None
    membership = {name: p for p, names_ in registry.PRESETS.items() for name in names_}
    for plan in plan_weights(rows, "pretrained", {}, offline=offline):
        b = plan.backbone
        layers = ", ".join(f"{d}={n}" for d, n in b.cam_layers)
        last_three = ", ".join(layer if b.weights_module(layer) == layer else f"{layer} (weights of "
                               f"{b.weights_module(layer)})" for layer in b.last_three)
        available = f"available ({plan.source}: {plan.location})" if plan.available else f"MISSING — {plan.fix}"
        family = b.family if b.family_source == "registry" else f"{b.family} ({b.family_source})"
        origin = "bundled package" if b.pretrained_from.startswith("lite") else "timm pretrained"
        click.echo(f"{b.name:20} {b.timm_id:32} {family} preset={membership.get(b.name, '-')}\n"
                   f"    layers ({b.layer_source}): {layers}; last three: {last_three}\n"
                   f"    weights: {origin}; {available}")


if __name__ == "__main__":
    main()
