"""Layer choices for any timm backbone outside the registry. Imports torch and timm.

Rules (documented in the README and shown in the report):
- shallow / middle / deep: for hierarchical models, the last module of each of the three deepest reduction
  groups of timm's ``feature_info`` (stride 8 / 16 / 32 for most CNNs); for token models whose features all
  share one stride, the blocks at 1/4 and 1/2 of the depth and the last block's ``norm1`` (its patch tokens
  still reach the head through the class token);
- last three: the last three modules, in execution order, that own a weight matrix (>= 2-D) and are called
  exactly once per forward;
- family: from the config, else a heuristic over module class names (attention or squeeze-excitation
  modules -> attention; multi-branch blocks -> wider; else deeper), reported as such;
- every chosen module is checked in a dry forward: called once, returns one tensor; its layout (NCHW,
  NHWC or tokens) is recorded so the engine can read it as a map.
"""
from __future__ import annotations

import difflib
import re
from dataclasses import dataclass, replace
from typing import Optional

import timm
import torch

from ..errors import UsageError
from ..inputs.registry import FAMILIES, WHOLE_MODEL, Backbone, Layout

ATTENTION_PATTERN = re.compile(r"Attention|Attn|SqueezeExcite|SEModule|SEBlock|EcaModule|CbamModule|GatherExcite|"
                               r"EffectiveSE|SelectiveKernel|SplitAttn|WindowAttention")
WIDER_PATTERN = re.compile(r"Inception|HighResolution|HrModule|Bottle2neck|Res2Net|Mixed_?\d|DlaTree")


def family_heuristic(model: torch.nn.Module) -> tuple[str, str]:
    names = {type(m).__name__ for m in model.modules()}
    attention = sorted(n for n in names if ATTENTION_PATTERN.search(n))
    if attention:
        return "attention", f"heuristic: has {', '.join(attention[:2])} modules"
    wider = sorted(n for n in names if WIDER_PATTERN.search(n))
    if wider:
        return "wider", f"heuristic: multi-branch {', '.join(wider[:2])} modules"
    return "deeper", "heuristic: a single-path stack (no attention or multi-branch modules)"


def _depth_candidates(model: torch.nn.Module) -> list[str]:
    info = getattr(model, "feature_info", None)
    entries = list(info) if info is not None else []
    if not entries:
        raise UsageError(f"{type(model).__name__} has no timm feature_info; give its layers in the config "
                         "([[backbone]] layers = {shallow = ..., middle = ..., deep = ...}).")
    reductions = sorted({e["reduction"] for e in entries})
    blocks = getattr(model, "blocks", None)
    if len(reductions) == 1 and blocks is not None and len(blocks) >= 4:
        n = len(blocks)
        deep = f"blocks.{n - 1}.norm1" if hasattr(blocks[n - 1], "norm1") else f"blocks.{n - 1}"
        return [f"blocks.{n // 4}", f"blocks.{n // 2}", deep]
    if len(reductions) < 3:
        raise UsageError(f"{type(model).__name__}: feature_info has only {len(reductions)} strides; give its layers "
                         "in the config.")
    last_of = {e["reduction"]: e["module"] for e in entries}
    return [last_of[r] for r in reductions[-3:]]


@dataclass(frozen=True)
class DryForward:
    seen: dict  # module -> (calls, first output)
    order: list  # modules in the order their first call returned
    consumer: dict  # id of a tensor -> first module that took it as its first input
    overwritten: frozenset  # modules whose first output was modified in place later in the forward
    input_shapes: dict  # module -> shape of its first call's first input (None: not a tensor)

    def keeps_shape(self, name: str) -> bool:
        """Called once, with a tensor in and the same shape out: identity could stand in for it."""
        calls, output = self.seen.get(name, (0, None))
        return (calls == 1 and torch.is_tensor(output) and self.input_shapes.get(name) is not None
                and self.input_shapes[name] == tuple(output.shape))

    def shapes(self, name: str) -> str:
        output = self.seen.get(name, (0, None))[1]
        if self.input_shapes.get(name) is None or not torch.is_tensor(output):
            return f"{name} (not a single-tensor module)"
        return (f"{name} ({'x'.join(map(str, self.input_shapes[name][1:]))} -> "
                f"{'x'.join(map(str, tuple(output.shape)[1:]))})")


def dry_forward(model: torch.nn.Module, input_size) -> DryForward:
    """One forward pass of zeros, recording for every module its calls, first input shape and first output."""
    calls: dict[str, int] = {}
    input_shapes: dict[str, object] = {}
    outputs: dict[str, object] = {}
    versions: dict[str, int] = {}
    consumer: dict[int, str] = {}
    # Every tensor a module takes is kept alive until the pass ends: ``consumer`` is keyed by id(), and the id of a
    # freed intermediate would be reused by a later tensor, which would then appear to feed the wrong module.
    held: list = []
    order: list[str] = []
    handles = []
    for name, module in model.named_modules():
        if name == WHOLE_MODEL:
            continue

        def pre_hook(_m, inputs, name=name):
            if inputs and torch.is_tensor(inputs[0]):
                held.append(inputs[0])
                consumer.setdefault(id(inputs[0]), name)
            if name not in input_shapes:
                input_shapes[name] = tuple(inputs[0].shape) if inputs and torch.is_tensor(inputs[0]) else None

        def hook(_m, _i, output, name=name):
            calls[name] = calls.get(name, 0) + 1
            if name not in outputs:
                order.append(name)
                outputs[name] = output
                versions[name] = output._version if torch.is_tensor(output) else 0
        handles.append(module.register_forward_pre_hook(pre_hook))
        handles.append(module.register_forward_hook(hook))
    was_training = model.training
    try:
        model.eval()
        with torch.no_grad():
            model(torch.zeros((1,) + tuple(input_size)))
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)
    overwritten = frozenset(n for n, o in outputs.items() if torch.is_tensor(o) and o._version != versions[n])
    return DryForward({n: (calls[n], outputs[n]) for n in calls}, order, consumer, overwritten, input_shapes)


NORM_PATTERN = re.compile(r"BatchNorm|GroupNorm|LayerNorm2d|FrozenBatchNorm")


def read_after_norm(dry: DryForward, modules: dict, weighted: str) -> str:
    """Where to read a weight layer's features: the normalisation that consumes its output (so Grad-CAM does
    not carry the norm's shift as a constant; see the registry's note), if that norm runs once and its output
    is not overwritten in place later; else the layer itself."""
    output = dry.seen[weighted][1]
    norm = dry.consumer.get(id(output)) if torch.is_tensor(output) else None
    if (norm is None or norm == weighted or not NORM_PATTERN.search(type(modules[norm]).__name__)
            or dry.seen.get(norm, (0,))[0] != 1 or norm in dry.overwritten):
        return weighted
    return norm


def layout_of(model: torch.nn.Module, output, channels: Optional[int]) -> Layout:
    if not torch.is_tensor(output):
        return Layout.NONE
    if output.dim() == 3:
        return Layout.TOKENS
    if output.dim() == 4:
        if channels is not None and output.shape[1] != channels and output.shape[-1] == channels:
            return Layout.NHWC
        return Layout.NCHW
    return Layout.VECTOR


def _last_stage(model: torch.nn.Module, deep: str, modules: dict) -> tuple[str, ...]:
    """The modules of the deepest stage: the deep feature module itself, or for token models the last
    quarter of the blocks and the final norm."""
    blocks = getattr(model, "blocks", None)
    if deep.startswith("blocks.") and blocks is not None and not hasattr(model, "feature_info_hierarchical"):
        n = len(blocks)
        names = tuple(f"blocks.{i}" for i in range(n - max(1, n // 4), n))
        return names + (("norm",) if "norm" in modules else ())
    return (deep.rsplit(".", 1)[0],) if deep.endswith(".norm1") else (deep,)


def auto_backbone(timm_id: str, family: Optional[str] = None, layers: Optional[dict] = None,
                  last_three: Optional[tuple] = None, name: Optional[str] = None) -> Backbone:
    """A Backbone for any timm id, layers chosen by the rules above unless given."""
    architecture = timm_id.split(".")[0]
    if not timm.is_model(architecture):
        raise UsageError(f"unknown backbone {timm_id!r}: not in the registry and not a timm model.{_suggest(timm_id)} "
                         "Run `reportgen backbones` for the registry, or timm.list_models() for timm ids.")
    if family is not None and family not in FAMILIES:
        raise UsageError(f"family {family!r} for {timm_id}: choose one of {', '.join(FAMILIES)}.")
    torch.manual_seed(0)
    model = timm.create_model(architecture, pretrained=False)
    cfg = timm.models.get_pretrained_cfg(timm_id) or timm.models.get_pretrained_cfg(architecture)
    input_size = (cfg.input_size if cfg is not None else None) or (3, 224, 224)
    dry = dry_forward(model, input_size)
    seen, order = dry.seen, dry.order
    channels = {e["module"]: e["num_chs"] for e in getattr(model, "feature_info", [])}
    modules = dict(model.named_modules())

    if layers:
        missing = [d for d in ("shallow", "middle", "deep") if d not in layers]
        if missing:
            raise UsageError(f"{timm_id}: layers needs shallow, middle and deep (missing {', '.join(missing)}).")
        depth_names, layer_source = [layers[d] for d in ("shallow", "middle", "deep")], "config"
    else:
        depth_names, layer_source = _depth_candidates(model), "automatic"
    weight_modules: tuple = ()
    if last_three:
        chosen_last, last_source = tuple(last_three), "config"
    else:
        weighted = [n for n in order if not list(modules[n].children()) and seen[n][0] == 1
                    and any(p.dim() >= 2 for p in modules[n].parameters(recurse=False))]
        if len(weighted) < 3:
            raise UsageError(f"{timm_id}: fewer than three weight layers called once per forward; give last_three.")
        taps = {w: read_after_norm(dry, modules, w) for w in weighted[-3:]}
        chosen_last, last_source = tuple(taps.values()), "automatic"
        weight_modules = tuple((tap, w) for w, tap in taps.items() if tap != w)

    layouts = {}
    for layer in list(depth_names) + list(chosen_last):
        if layer not in modules:
            close = [n for n in modules if n.startswith(layer.rsplit(".", 1)[0])][:3]
            raise UsageError(f"{timm_id}: no module {layer!r} (named_modules has e.g. {', '.join(close) or 'none'}).")
        if layer not in seen:
            raise UsageError(f"{timm_id}: module {layer!r} is never called in a forward pass; choose another.")
        count, output = seen[layer]
        if count != 1:
            raise UsageError(f"{timm_id}: module {layer!r} is called {count} times per forward; choose a module "
                             "that runs once.")
        layout = layout_of(model, output, channels.get(layer))
        if layout == Layout.NONE:
            raise UsageError(f"{timm_id}: module {layer!r} returns {type(output).__name__}, not a tensor.")
        layouts[layer] = layout
    from .engine import to_map

    for role, layer in zip(("shallow", "middle", "deep"), depth_names):
        spatial = to_map(model, seen[layer][1], layouts[layer])
        if spatial is None or spatial.dim() != 4 or spatial.shape[-1] * spatial.shape[-2] < 2:
            raise UsageError(f"{timm_id}: the {role} layer {layer!r} has no spatial map (output "
                             f"{tuple(seen[layer][1].shape)}); give layers with a spatial output in the config.")

    if family is None:
        family, family_source = family_heuristic(model)
    else:
        family_source = "config"
    classifier = model.pretrained_cfg.get("classifier") if getattr(model, "pretrained_cfg", None) else None
    head = tuple(c for c in ((classifier,) if isinstance(classifier, str) else tuple(classifier or ()))
                 if c in modules) or (chosen_last[-1],)
    randomisation = (("head", head), ("last stage", _last_stage(model, depth_names[2], modules)),
                     ("all", (WHOLE_MODEL,)))
    return Backbone(
        name=name or architecture, timm_id=timm_id, family=family, display_name=name or architecture,
        cam_layers=(("shallow", depth_names[0]), ("middle", depth_names[1]), ("deep", depth_names[2])),
        last_three=chosen_last, randomisation=randomisation,
        layouts=tuple(sorted(layouts.items())), layer_source=layer_source if layer_source == last_source
        else f"{layer_source} depths, {last_source} last three", family_source=family_source,
        weight_modules=weight_modules,
    )


def _suggest(name: str) -> str:
    from ..inputs import registry

    ours = difflib.get_close_matches(name, [b.name for b in registry.BACKBONES], n=3, cutoff=0.6)
    close = ours or difflib.get_close_matches(name, timm.list_models(), n=3, cutoff=0.75)
    return f" Did you mean: {', '.join(close)}?" if close else ""


def resolve_backbones(preset_name: str, requested: tuple = (), specs: tuple = ()) -> tuple[Backbone, ...]:
    """The run's backbones: ``requested`` names (command line) if any, else the battery file's
    ``[[backbone]]`` tables, else the preset. Registry names keep their table row; any other timm id gets
    layers chosen automatically."""
    from ..inputs import registry

    chosen: list[Backbone] = []
    if requested:
        for name in requested:
            try:
                chosen.append(registry.lookup(name))
            except registry.UnknownName:
                chosen.append(auto_backbone(name))
    elif specs:
        for spec in specs:
            try:
                base = registry.lookup(spec.id)
            except registry.UnknownName:
                chosen.append(auto_backbone(spec.id, spec.family, spec.layers, spec.last_three, spec.name))
                continue
            backbone = with_overrides(base, spec.family, spec.layers, spec.last_three)
            # A name of its own makes it a candidate of its own (the same architecture twice, e.g. a fine-tuned
            # checkpoint beside the stock weights): named so in every table, figure and file.
            chosen.append(replace(backbone, name=spec.name, display_name=spec.name) if spec.name else backbone)
    else:
        try:
            return registry.preset(preset_name)
        except registry.UnknownName as exc:
            raise UsageError(str(exc)) from None
    unique: dict[str, Backbone] = {}
    for backbone in chosen:
        if backbone.name in unique and specs and not requested:
            raise UsageError(f"two [[backbone]] tables are named {backbone.name!r}; give each a name of its own "
                             "(name = \"...\") to compare them side by side.")
        unique.setdefault(backbone.name, backbone)
    return tuple(unique.values())


def with_overrides(backbone: Backbone, family: Optional[str] = None, layers: Optional[dict] = None,
                   last_three: Optional[tuple] = None) -> Backbone:
    """A registry backbone with config overrides; new layers are checked like automatic ones."""
    if not (family or layers or last_three):
        return backbone
    if layers or last_three:
        checked = auto_backbone(backbone.timm_id, family or backbone.family,
                                layers or backbone.depth_layers, last_three or backbone.last_three, backbone.name)
        return replace(checked, display_name=backbone.display_name, pretrained_from=backbone.pretrained_from,
                       randomisation=backbone.randomisation if not layers else checked.randomisation,
                       weight_modules=backbone.weight_modules if not last_three else checked.weight_modules)
    if family not in FAMILIES:
        raise UsageError(f"family {family!r} for {backbone.name}: choose one of {', '.join(FAMILIES)}.")
    return replace(backbone, family=family, family_source="config")
