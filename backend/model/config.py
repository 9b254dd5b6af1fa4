"""Model configurations: one frozen dataclass per model size.

`paper` is ZeroShape-W as published (193.7M parameters without the text encoder), `small` is the size
the project trains on a 2-core CPU and ships, `tiny` exists for fast tests. Variants are made with
`dataclasses.replace`, never by editing a preset.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Literal

TextEncoderKind = Literal["category_table", "open_clip"]
ResNetBlock = Literal["basic", "bottleneck"]

# The category-agnostic prompt of ZeroShape-W: with it the model needs no recognition step.
AGNOSTIC_PROMPT = "object"

# The prompt that asks the model to choose the category itself (models with a scene head; others use "object").
AUTO_CATEGORY = "auto"

# The one list of category names: the learned prompt table and every data source read it. The procedural
# builders make a subset of it (training.data.procedural refuses to import a builder that is not here), and
# the asset sources map their own names onto it (training.data.categories). "object" is always first; new
# names are appended, so a checkpoint's table keeps its rows (warm starts copy rows by name anyway).
DEFAULT_CATEGORIES: tuple[str, ...] = (
    AGNOSTIC_PROMPT,
    "chair",
    "table",
    "sofa",
    "bed",
    "bookcase",
    "desk",
    "cabinet",
    "lamp",
    "mug",
    "bottle",
    "vase",
    "bowl",
    "stool",
    "bench",
    "shelf",
    "plant",
    "animal",
    "person",
    "vehicle",
    "appliance",
    "toy",
    "food",
)


@dataclass(frozen=True)
class BackboneConfig:
    """DPT-Hybrid: a ResNetV2 stem and stages feeding a ViT, reassembled by DPT fusion blocks."""

    resnet_layers: tuple[int, ...] = (3, 4, 9)
    """Bottleneck blocks per ResNetV2 stage; the last stage's output is tokenised for the ViT."""
    resnet_channels: tuple[int, ...] = (256, 512, 1024)
    """Output channels per ResNetV2 stage."""
    resnet_stem_channels: int = 64
    norm_groups: int = 32
    """GroupNorm groups of the ResNetV2 (32 in BiT/DPT); must divide every ResNet width."""
    embed_dim: int = 768
    """ViT token width."""
    depth: int = 12
    """ViT blocks."""
    num_heads: int = 12
    hook_blocks: tuple[int, int] = (8, 11)
    """ViT blocks read out as the H/16 and (after a stride-2 conv) H/32 feature maps, as DPT does."""
    fusion_channels: int = 256
    """Width of the DPT reassemble/fusion path; the fine feature map at H/2 has this many channels."""
    depth_head_hidden: int = 32
    """Channels of the depth head's full-resolution conv (DPT: 32)."""

    @property
    def patch_stride(self) -> int:
        """Total stride of the ResNet stem and stages (stem 4, then 2 per stage after the first)."""
        return 4 * 2 ** (len(self.resnet_layers) - 1)


@dataclass(frozen=True)
class CoordEncoderConfig:
    """ResNet that reads the visible 3D shape plus the occluder mask (4 channels)."""

    block: ResNetBlock = "bottleneck"
    layers: tuple[int, int, int, int] = (3, 4, 6, 3)
    """Blocks per ResNet stage; with the defaults this is ResNet-50, as in ZeroShape."""
    channels: tuple[int, int, int, int] = (64, 128, 256, 512)
    """Base width per stage (a bottleneck stage outputs 4× this)."""
    stem_width: int = 64
    input_size: int = 224
    """Side of the 4-channel map given to the ResNet, in pixels (mask-aware resize from the image size)."""


@dataclass(frozen=True)
class DecoderConfig:
    """Cross-attention occupancy decoder (ZeroShape's `Implicit`, with ZeroShape-W's text-aware queries)."""

    width: int = 256
    """Token width of the latents and the point queries."""
    num_blocks: int = 2
    num_heads: int = 8
    mlp_ratio: float = 4.0
    text_query_dim: int = 64
    """Channels of each query taken by the projected text embedding; the point embedding has the rest."""
    occupancy_hidden: int = 256
    occupancy_layers: int = 9
    """Linear layers of the occupancy MLP (Softplus between them)."""
    occupancy_skips: tuple[int, ...] = (2, 4, 6)
    """Layers whose input is concatenated with the MLP's own input (xyz and point feature)."""
    softplus_beta: float = 100.0
    drop_path: float = 0.1
    pixel_aligned: bool = False
    """Give every query point what the camera saw along its ray (backend/model/pixel_aligned.py): its signed
    distance to the visible surface, the visible and occluder masks and the coordinate encoder's fine
    features at its pixel. False is the published decoder (tokens only), which ZeroShape's weights fit."""
    evidence_hidden: int = 64
    """Hidden width of the MLP that embeds the pixel-aligned evidence (pixel_aligned only)."""


@dataclass(frozen=True)
class TextEncoderConfig:
    """Where the category embedding comes from."""

    kind: TextEncoderKind = "category_table"
    embed_dim: int = 512
    """Width of the text embedding fed to FiLM and the queries (512 for OpenCLIP ViT-B-32)."""
    categories: tuple[str, ...] = DEFAULT_CATEGORIES
    """Known prompts of the learned table (`category_table` only); index 0 must be "object"."""
    open_clip_model: str = "ViT-B-32"
    """OpenCLIP architecture whose text tower is loaded from a local file (`open_clip` only)."""


@dataclass(frozen=True)
class ModelConfig:
    """Everything that determines the network's structure and its parameter shapes."""

    name: str
    image_size: int = 224
    """Input side in pixels. The backbone runs at this size (ZeroShape-W: 224)."""
    backbone: BackboneConfig = field(default_factory=BackboneConfig)
    coord_encoder: CoordEncoderConfig = field(default_factory=CoordEncoderConfig)
    decoder: DecoderConfig = field(default_factory=DecoderConfig)
    text: TextEncoderConfig = field(default_factory=TextEncoderConfig)
    intrinsics_blocks: int = 2
    """Residual conv blocks of the intrinsics head (2 blocks = the paper's 4 conv and 2 ReLU)."""
    coord_encoder_blocks: int = 2
    """Residual 1×1 conv blocks on the local and on the global encoder features (2 + 2 blocks and a
    final projection = the paper's 9 extra conv layers)."""
    mask_threshold: float = 0.5
    """η: a pixel joins the visible shape when its visible-mask probability is at least this."""
    default_focal_ratio: float = 1.3875
    """Focal length / image side at a zero intrinsics-head output (ZeroShape: 310.8 px at 224)."""
    focal_range_log4: float = 1.0
    """The focal length spans default·4^[-r, r]."""
    scene_head: bool = False
    """Predict the direction of gravity and the category from the global features (model v2, `SceneHead`):
    upright meshes and `--category auto`. False is the published model, which ZeroShape's weights fit."""
    scene_head_hidden: int = 128
    auto_category_confidence: float = 0.5
    """`auto` uses the predicted category when its probability is at least this, else "object"."""
    shape_category_head: bool = False
    """Predict the category from the shape tokens (`ShapeCategoryHead`), not from the scene head's image features,
    which carry almost none (model card, session 15); the scene head, if any, then predicts gravity alone."""
    body_head: Literal["none", "image", "mask", "constant"] = "none"
    """Predict how the silhouette's inflated body stands (`BodyHead`: its mirror plane's tilt and its depth in
    front of and behind it) from the global features and the visible mask ("image"), from the mask alone ("mask"),
    or as one body for every image ("constant"). "none" is the published model: `--shape inflate` then gives the
    round, camera-facing body."""
    body_head_hidden: int = 64

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelConfig:
        """Rebuild a config saved with `to_dict`; unknown keys are an error, so a typo surfaces."""
        data = dict(data)
        nested = {
            "backbone": BackboneConfig,
            "coord_encoder": CoordEncoderConfig,
            "decoder": DecoderConfig,
            "text": TextEncoderConfig,
        }
        for key, kind in nested.items():
            if key in data:
                data[key] = _dataclass_from_dict(kind, data[key])
        return _dataclass_from_dict(cls, data)


def _dataclass_from_dict(kind: type, data: dict[str, Any]) -> Any:
    names = {f.name: f for f in dataclasses.fields(kind)}
    unknown = set(data) - set(names)
    if unknown:
        raise ValueError(f"unknown {kind.__name__} fields: {sorted(unknown)}")
    converted = {}
    for key, value in data.items():
        # JSON turns tuples into lists; the frozen configs use tuples so they stay hashable.
        converted[key] = tuple(value) if isinstance(value, list) else value
    return kind(**converted)


@dataclass(frozen=True)
class PreprocessConfig:
    """How an image becomes the network's input. Saved in every checkpoint, read by every consumer."""

    image_size: int = 224
    """Side of the square network input, in pixels."""
    input_scale: float = 2.0
    input_shift: float = -1.0
    """The network sees rgb·scale + shift with rgb in [0, 1] (DPT's convention: no ImageNet statistics)."""
    crop_margin: float = 1.2
    """Square crop side = margin × the longer side of the object's box."""
    background_rgb: tuple[float, float, float] = (1.0, 1.0, 1.0)
    """Fill for padding outside the photo and behind a real alpha channel, as rgb in [0, 1]."""
    query_box_half_extent: float = 1.5
    """Occupancy is queried in [-h, h]³ of the normalised frame (the visible part lies in the unit ball)."""
    occupancy_level: float = 0.0
    """Logit at which the surface is extracted (0: probability 0.5). A model trained on few steps is
    under-confident inside thin objects; its checkpoint can carry a level chosen on training data."""

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PreprocessConfig:
        return _dataclass_from_dict(cls, data)


PAPER = ModelConfig(
    name="paper",
    text=TextEncoderConfig(kind="open_clip", embed_dim=512),
)

SMALL = ModelConfig(
    name="small",
    backbone=BackboneConfig(
        resnet_layers=(1, 1),
        resnet_channels=(64, 128),
        resnet_stem_channels=32,
        norm_groups=8,
        embed_dim=128,
        depth=4,
        num_heads=4,
        hook_blocks=(1, 3),
        fusion_channels=24,
        depth_head_hidden=8,
    ),
    coord_encoder=CoordEncoderConfig(
        block="basic", layers=(1, 1, 1, 1), channels=(32, 64, 128, 256), stem_width=32, input_size=112
    ),
    decoder=DecoderConfig(
        width=64,
        num_blocks=2,
        num_heads=4,
        mlp_ratio=2.0,
        text_query_dim=16,
        occupancy_hidden=64,
        drop_path=0.0,
        pixel_aligned=True,
    ),
    text=TextEncoderConfig(kind="category_table", embed_dim=64),
    scene_head=True,
    shape_category_head=True,
)

# `small` with a larger image side: its training curves stay flat and its depth error on training views equals that
# on validation (model card, session 15), so the image side underfits. A wider, deeper ViT and DPT's 32-channel
# depth head; the 3D half is `small`'s, so `--init-matching` copies a trained `small`'s 3D half whole. Training
# runs at about half `small`'s speed on the CPU; the occupancy queries, which dominate inference, are unchanged.
MEDIUM = dataclasses.replace(
    SMALL,
    name="medium",
    backbone=dataclasses.replace(
        SMALL.backbone,
        embed_dim=192,
        depth=6,
        num_heads=6,
        hook_blocks=(2, 5),
        fusion_channels=64,
        depth_head_hidden=32,
    ),
)

TINY = ModelConfig(
    name="tiny",
    image_size=64,
    backbone=BackboneConfig(
        resnet_layers=(1, 1),
        resnet_channels=(32, 64),
        resnet_stem_channels=16,
        norm_groups=8,
        embed_dim=32,
        depth=2,
        num_heads=2,
        hook_blocks=(0, 1),
        fusion_channels=16,
    ),
    coord_encoder=CoordEncoderConfig(
        block="basic", layers=(1, 1, 1, 1), channels=(16, 16, 32, 32), stem_width=16, input_size=64
    ),
    decoder=DecoderConfig(
        width=32,
        num_blocks=2,
        num_heads=2,
        text_query_dim=8,
        occupancy_hidden=32,
        drop_path=0.0,
        pixel_aligned=True,
        evidence_hidden=16,
    ),
    text=TextEncoderConfig(kind="category_table", embed_dim=16),
    scene_head=True,
    shape_category_head=True,
    scene_head_hidden=16,
)

CONFIGS: dict[str, ModelConfig] = {c.name: c for c in (PAPER, SMALL, MEDIUM, TINY)}


def get_config(name: str) -> ModelConfig:
    """The preset called `name` (`paper`, `small`, `medium` or `tiny`)."""
    try:
        return CONFIGS[name]
    except KeyError:
        raise ValueError(f"unknown model config {name!r}; choose one of {sorted(CONFIGS)}") from None


def default_preprocess(config: ModelConfig) -> PreprocessConfig:
    """Preprocessing that matches a model config (same input side)."""
    return PreprocessConfig(image_size=config.image_size)
