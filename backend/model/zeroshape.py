"""ZeroShape-W: the model facade. `encode(image, text) → Latent`, `query(points, latent) → logits`.

Pipeline (Cho et al., arXiv 2403.14539): DPT-Hybrid regresses intrinsics, depth, a visible-object mask
and an occluder mask from one image; depth is unprojected through K⁻¹ where the visible mask passes η
and normalised into the unit ball; a ResNet encodes that shape plus the occluder mask into tokens; point
queries (with the text embedding) cross-attend to the tokens and an MLP returns occupancy logits.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from .backbone import DPTHybridBackbone
from .config import AGNOSTIC_PROMPT, AUTO_CATEGORY, ModelConfig, PreprocessConfig, default_preprocess
from .coord_encoder import CoordEncoder
from .geometry import Normalisation, normalise_points, resize_coordinate_map, unproject_depth
from .heads import BodyHead, DepthHead, IntrinsicsHead, MaskHead, SceneHead, ShapeCategoryHead
from .implicit import ImplicitDecoder
from .pixel_aligned import PixelEvidence, surface_maps
from .text import TextEncoder, build_text_encoder

# Parts trained in the pixel stage (pixel-level regression) and their order in parameter tables; the shape
# stage trains SHAPE_COMPONENTS alone. The scene head and the category head exist only where the config asks for
# them; the category head reads the shape tokens but is trained with the pixel heads (the shape stage feeds true
# shapes, which `auto` never sees).
PIXEL_COMPONENTS = (
    "backbone",
    "intrinsics_head",
    "depth_head",
    "visible_mask_head",
    "occluder_mask_head",
    "scene_head",
    "category_head",
)
SHAPE_COMPONENTS = ("coord_encoder", "decoder")
# The body head (`BodyHead`) is none of these: `zeroshape-w train-body` trains it alone onto a trained model, and the
# training loop leaves it as it is.
COMPONENTS = (*PIXEL_COMPONENTS, *SHAPE_COMPONENTS, "text_encoder")


def _logit(probability: torch.Tensor) -> torch.Tensor:
    """Probabilities in [0, 1] → float32 logits, clamped away from ±∞ (a mask given as 0/1 stays finite)."""
    return torch.logit(probability.float().clamp(1e-4, 1 - 1e-4))


@dataclass
class Latent:
    """Everything `encode` infers from one batch of images. H, W: the input size; T: token count."""

    intrinsics: torch.Tensor
    """K [B, 3, 3] in pixels of the network input (similarity-ambiguous with depth: not metric)."""
    depth: torch.Tensor
    """[B, 1, H, W] camera z, non-negative, up to scale."""
    visible_mask_logits: torch.Tensor
    """[B, 1, H, W] logits of "this pixel shows the object"."""
    occluder_mask_logits: torch.Tensor
    """[B, 1, H, W] logits of "something in front hides the object here"."""
    visible_points: torch.Tensor
    """[B, 3, H, W] the visible shape in the normalised frame (OpenCV axes), zero outside `visible`."""
    visible: torch.Tensor
    """[B, 1, H, W] bool: pixels that form the visible shape."""
    normalisation: Normalisation
    """camera coordinates → normalised frame."""
    tokens: torch.Tensor
    """[B, T, C] shape tokens, global token first."""
    text_embedding: torch.Tensor
    """[B, E]."""
    evidence: PixelEvidence | None = None
    """What pixel-aligned queries sample (decoders with `pixel_aligned` only)."""
    gravity: torch.Tensor | None = None
    """[B, 3] unit direction of gravity in camera axes (OpenCV: y down), models with a scene head only."""
    category_logits: torch.Tensor | None = None
    """[B, C] logits over `config.text.categories`, models with a category (`config.shape_category_head`) or scene
    head only. With "auto", those that chose the prompt: from the encoding under "object"."""
    prompts: list[str] | None = None
    """The category prompt each image was encoded with (after `auto` was resolved); None for a given embedding."""
    global_features: torch.Tensor | None = None
    """[B, C, h, w] the backbone's global map (None from `encode_shape`): what `ZeroShapeW.body` reads."""


class ZeroShapeW(nn.Module):
    def __init__(
        self,
        config: ModelConfig,
        preprocess: PreprocessConfig | None = None,
        text_encoder: TextEncoder | None = None,
    ):
        super().__init__()
        self.config = config
        self.preprocess = preprocess or default_preprocess(config)
        if self.preprocess.image_size != config.image_size:
            raise ValueError(
                f"preprocessing makes {self.preprocess.image_size}² images, the model expects {config.image_size}²"
            )
        self.text_encoder = text_encoder or build_text_encoder(config.text)
        if self.text_encoder.embed_dim != config.text.embed_dim:
            raise ValueError(
                f"text encoder gives {self.text_encoder.embed_dim}-d embeddings, config says {config.text.embed_dim}"
            )
        text_dim = config.text.embed_dim
        self.backbone = DPTHybridBackbone(config.backbone, config.image_size)
        self.intrinsics_head = IntrinsicsHead(
            self.backbone.global_channels,
            config.intrinsics_blocks,
            config.image_size,
            config.default_focal_ratio,
            config.focal_range_log4,
        )
        fine = self.backbone.fine_channels
        self.depth_head = DepthHead(fine, config.backbone.depth_head_hidden)
        self.visible_mask_head = MaskHead(fine, text_dim)
        self.occluder_mask_head = MaskHead(fine, text_dim, extra_channels=1)
        self.coord_encoder = CoordEncoder(config.coord_encoder, config.decoder.width, config.coord_encoder_blocks)
        self.decoder = ImplicitDecoder(
            config.decoder, text_dim, self.coord_encoder.grid, self.coord_encoder.fine_channels
        )
        if (config.scene_head or config.shape_category_head) and AUTO_CATEGORY in config.text.categories:
            raise ValueError(f"{AUTO_CATEGORY!r} is reserved for choosing the category; rename that category")
        categories = len(config.text.categories)
        self.scene_head = None
        if config.scene_head:
            self.scene_head = SceneHead(
                self.backbone.global_channels, 0 if config.shape_category_head else categories, config.scene_head_hidden
            )
        self.category_head = None
        if config.shape_category_head:
            self.category_head = ShapeCategoryHead(config.decoder.width, categories, config.scene_head_hidden)
        self.body_head = None
        if config.body_head != "none":
            self.body_head = BodyHead(self.backbone.global_channels, config.body_head_hidden, config.body_head)
        self.frozen_components: tuple[str, ...] = ()
        """Components `freeze_all_but` froze: no gradients, and evaluation mode under every `train()`."""

    # ----------------------------------------------------------------------------------------- API
    def embed_text(self, text: Sequence[str] | torch.Tensor | None, batch: int) -> torch.Tensor:
        """Prompts (one per image, or one for all), a precomputed [B, E] embedding, or None ("object")."""
        if isinstance(text, torch.Tensor):
            return text
        return self.text_encoder(self._prompt_list(text, batch))

    @staticmethod
    def _prompt_list(text: Sequence[str] | str | None, batch: int) -> list[str]:
        if text is None or isinstance(text, str):
            text = [text or AGNOSTIC_PROMPT] * batch
        if len(text) != batch:
            raise ValueError(f"got {len(text)} prompts for {batch} images")
        return list(text)

    def choose_categories(self, category_logits: torch.Tensor | None) -> tuple[list[str], list[float | None]]:
        """The category `auto` picks for each image, and its probability: the scene head's most likely
        category when its probability reaches `config.auto_category_confidence`, else "object". Without a
        scene head (category_logits None) every image gets "object" and probability None.

        Args:
            category_logits: [B, C] or None.
        """
        if category_logits is None:
            return [AGNOSTIC_PROMPT], [None]
        probabilities = torch.softmax(category_logits.float(), dim=1)
        best, index = probabilities.max(dim=1)
        names = self.config.text.categories
        chosen = [
            names[i] if p >= self.config.auto_category_confidence else AGNOSTIC_PROMPT
            for p, i in zip(best.tolist(), index.tolist(), strict=True)
        ]
        return chosen, [round(p, 4) for p in best.tolist()]

    def encode(
        self,
        image: torch.Tensor,
        text: Sequence[str] | str | torch.Tensor | None = None,
        visible_mask: torch.Tensor | None = None,
        depth: torch.Tensor | None = None,
        intrinsics: torch.Tensor | None = None,
    ) -> Latent:
        """Infer camera, depth, masks, visible shape and shape tokens.

        Args:
            image: [B, 3, H, W] RGB in [0, 1], H = W = config.image_size.
            text: category prompt(s); None is the category-agnostic "object"; "auto" lets the scene head choose
                (see `choose_categories`).
            visible_mask: optional [B, 1, H, W] mask in {0, 1} used instead of the predicted one to select
                the visible shape (ground truth during training, a user's alpha at inference).
            depth, intrinsics: optional [B, 1, H, W] camera z and [B, 3, 3] K used instead of the predicted
                ones to build the visible shape (ground truth during training: teacher forcing). The latent's
                `depth` and `intrinsics` stay the predictions, which the losses compare to the truth.
        """
        size = self.config.image_size
        if image.ndim != 4 or image.shape[1] != 3 or image.shape[-2:] != (size, size):
            raise ValueError(f"expected images of shape [B, 3, {size}, {size}], got {list(image.shape)}")
        network_input = image * self.preprocess.input_scale + self.preprocess.input_shift
        maps = self.backbone(network_input)
        gravity, category_logits = self.scene_head(maps[0]) if self.scene_head is not None else (None, None)
        # Camera and depth read no prompt: computed once, even when `auto` encodes twice.
        camera = (self.intrinsics_head(maps[0]), self.depth_head(maps[1]))
        truth = {"visible_mask": visible_mask, "depth": depth, "intrinsics": intrinsics}

        def prompted(prompts: list[str] | None, logits: torch.Tensor | None) -> Latent:
            embedding = self.embed_text(text if prompts is None else prompts, image.shape[0]).to(image.dtype)
            return self._encode_prompted(maps, camera, embedding, prompts, truth, gravity, logits)

        def resolve(prompts: list[str], chosen: list[str]) -> list[str]:
            return [c if p == AUTO_CATEGORY else p for p, c in zip(prompts, chosen, strict=True)]

        if isinstance(text, torch.Tensor):
            return prompted(None, category_logits)
        prompts = self._prompt_list(text, image.shape[0])
        if AUTO_CATEGORY not in prompts:
            return prompted(prompts, category_logits)
        if self.category_head is None:
            chosen, _ = self.choose_categories(category_logits)
            chosen = chosen * image.shape[0] if len(chosen) == 1 else chosen
            return prompted(resolve(prompts, chosen), category_logits)
        # The category is read off the shape, which the prompted mask heads shape in turn: encode under "object"
        # first, then again (the backbone's maps, camera and depth reused) where the head chose a category.
        agnostic = [AGNOSTIC_PROMPT if p == AUTO_CATEGORY else p for p in prompts]
        first = prompted(agnostic, None)
        chosen, _ = self.choose_categories(first.category_logits)
        resolved = resolve(prompts, chosen)
        if resolved == agnostic:
            return first
        latent = prompted(resolved, None)
        latent.category_logits = first.category_logits  # the answer `auto` followed
        return latent

    def _encode_prompted(
        self,
        maps: tuple[torch.Tensor, torch.Tensor],
        camera: tuple[torch.Tensor, torch.Tensor],
        text_embedding: torch.Tensor,
        prompts: list[str] | None,
        truth: dict[str, torch.Tensor | None],
        gravity: torch.Tensor | None,
        category_logits: torch.Tensor | None,
    ) -> Latent:
        """`encode` after the backbone: its (global, fine) maps, the predicted camera (K [B, 3, 3] in pixels,
        depth [B, 1, H, W] camera z), the text embedding [B, E] and the prompts it came from (None for a given
        embedding; no "auto" left). truth: the optional visible_mask, depth and intrinsics `encode` takes. A
        category head's logits replace `category_logits` (the scene head's)."""
        fine_map = maps[1]
        K, predicted_depth = camera
        visible_logits = self.visible_mask_head(fine_map, text_embedding)
        visible_prob_fine = F.interpolate(
            torch.sigmoid(visible_logits), size=fine_map.shape[-2:], mode="bilinear", align_corners=False
        )
        occluder_logits = self.occluder_mask_head(fine_map, text_embedding, extra=visible_prob_fine)

        visible_prob = torch.sigmoid(visible_logits)
        visible_mask, depth, intrinsics = truth["visible_mask"], truth["depth"], truth["intrinsics"]
        visible = visible_prob >= self.config.mask_threshold if visible_mask is None else visible_mask >= 0.5
        points, normalisation, tokens, evidence = self._shape_half(
            predicted_depth if depth is None else depth.to(predicted_depth.dtype),
            K if intrinsics is None else intrinsics.to(K.dtype),
            visible,
            visible_prob if visible_mask is None else visible.to(visible_prob.dtype),
            torch.sigmoid(occluder_logits),
        )
        if self.category_head is not None:
            category_logits = self.category_head(tokens)
        return Latent(
            intrinsics=K,
            depth=predicted_depth,
            visible_mask_logits=visible_logits,
            occluder_mask_logits=occluder_logits,
            visible_points=points,
            visible=visible,
            normalisation=normalisation,
            tokens=tokens,
            text_embedding=text_embedding,
            evidence=evidence,
            gravity=gravity,
            category_logits=category_logits,
            prompts=prompts,
            global_features=maps[0],
        )

    def encode_shape(
        self,
        depth: torch.Tensor,
        intrinsics: torch.Tensor,
        visible: torch.Tensor,
        occluder_prob: torch.Tensor,
        text_embedding: torch.Tensor,
        visible_prob: torch.Tensor | None = None,
    ) -> Latent:
        """The 3D half alone: visible shape → tokens (and pixel-aligned evidence), without the backbone.

        `encode` calls it with its predictions; the shape stage of training calls it with (augmented) true
        depth, camera and masks, which is much faster than running the backbone.

        Args:
            depth: [B, 1, H, W] camera z; intrinsics: [B, 3, 3] K in pixels.
            visible: [B, 1, H, W] bool, the pixels that form the visible shape.
            occluder_prob: [B, 1, H, W] occluder-mask probability in [0, 1].
            text_embedding: [B, E].
            visible_prob: [B, 1, H, W] visible-mask probability (default: `visible` itself).
        Returns:
            a Latent whose pixel fields (intrinsics, depth, mask logits) are these inputs.
        """
        if visible_prob is None:
            visible_prob = visible.to(depth.dtype)
        points, normalisation, tokens, evidence = self._shape_half(
            depth, intrinsics, visible, visible_prob, occluder_prob
        )
        return Latent(
            intrinsics=intrinsics,
            depth=depth,
            visible_mask_logits=_logit(visible_prob),
            occluder_mask_logits=_logit(occluder_prob),
            visible_points=points,
            visible=visible,
            normalisation=normalisation,
            tokens=tokens,
            text_embedding=text_embedding,
            evidence=evidence,
        )

    def _shape_half(
        self,
        depth: torch.Tensor,
        intrinsics: torch.Tensor,
        visible: torch.Tensor,
        visible_prob: torch.Tensor,
        occluder_prob: torch.Tensor,
    ) -> tuple[torch.Tensor, Normalisation, torch.Tensor, PixelEvidence | None]:
        """Visible shape → (normalised points [B, 3, H, W], normalisation, tokens [B, T, C], evidence or None)."""
        points, normalisation = normalise_points(unproject_depth(depth, intrinsics), visible)
        weight = visible.to(points.dtype)
        coord_size = self.config.coord_encoder.input_size
        coord_map = torch.cat(
            [
                resize_coordinate_map(points, weight, coord_size),
                F.interpolate(occluder_prob, size=(coord_size, coord_size), mode="bilinear"),
            ],
            dim=1,
        )
        tokens, fine_features = self.coord_encoder.forward_with_features(coord_map)
        evidence = None
        if self.config.decoder.pixel_aligned:
            evidence = PixelEvidence(
                intrinsics=intrinsics,
                normalisation=normalisation,
                surface=surface_maps(
                    depth, visible, points, visible_prob.to(depth.dtype), occluder_prob.to(depth.dtype)
                ),
                features=fine_features,
            )
        return points, normalisation, tokens, evidence

    def body(self, latent: Latent, visible_mask: torch.Tensor) -> torch.Tensor | None:
        """How the silhouette's inflated body should stand (models with a body head; else None).

        Args:
            visible_mask: [B, 1, H, W] in [0, 1], the mask the body is inflated from (refined, a user's or the
                alpha channel: not necessarily the latent's own).
        Returns:
            [B, 4]: tilt_u, tilt_v (depth pixels per pixel), log front scale, log back scale; read by
            `backend.silhouette.Thickness.from_body`.
        """
        if self.body_head is None or latent.global_features is None:
            return None
        return self.body_head(latent.global_features, visible_mask.to(latent.global_features.dtype))

    def query(self, points: torch.Tensor, latent: Latent) -> torch.Tensor:
        """Occupancy logits of 3D points in the normalised frame.

        Args:
            points: [B, N, 3] in the normalised frame (the query box is ±preprocess.query_box_half_extent).
        Returns:
            [B, N] logits; sigmoid > 0.5 means inside. Each point's value is independent of the others.
        """
        return self.decoder(latent.tokens, latent.text_embedding, points, latent.evidence)

    def forward(
        self,
        image: torch.Tensor | None,
        points: torch.Tensor | None,
        text: Sequence[str] | str | torch.Tensor | None = None,
        visible_mask: torch.Tensor | None = None,
        depth: torch.Tensor | None = None,
        intrinsics: torch.Tensor | None = None,
        occluder_mask: torch.Tensor | None = None,
    ) -> tuple[Latent, torch.Tensor | None]:
        """`encode` then `query` (training goes through here so DDP sees one call). points None: encode only.

        image None: the 3D half alone (`encode_shape`) on the given depth, intrinsics, visible mask and
        occluder mask [B, 1, H, W] (the shape stage of training)."""
        if image is None:
            if visible_mask is None or depth is None or intrinsics is None or occluder_mask is None:
                raise ValueError("without an image, give depth, intrinsics, visible_mask and occluder_mask")
            text_embedding = self.embed_text(text, depth.shape[0]).to(depth.dtype)
            latent = self.encode_shape(depth, intrinsics, visible_mask >= 0.5, occluder_mask, text_embedding)
        else:
            latent = self.encode(image, text, visible_mask, depth, intrinsics)
        return latent, None if points is None else self.query(points, latent)

    # -------------------------------------------------------------------------------- bookkeeping
    def freeze_all_but(self, trained: Sequence[str]) -> tuple[str, ...]:
        """Freeze every component except `trained` (names of COMPONENTS) and return the frozen names.

        Frozen parts get no gradients and stay in evaluation mode even when the model is put in training mode,
        so their batch-norm statistics stay as trained too: the frozen parts compute exactly what they did,
        e.g. a scene head trained onto a shipped model leaves its meshes bit for bit unchanged.
        """
        self._check_components(trained)
        self.frozen_components = tuple(
            name for name in COMPONENTS if name not in trained and getattr(self, name) is not None
        )
        for name in self.frozen_components:
            getattr(self, name).requires_grad_(False)
        return self.train(self.training).frozen_components

    def freeze(self, names: Sequence[str]) -> tuple[str, ...]:
        """Freeze the components `names` (as `freeze_all_but` freezes the rest) and return them."""
        self._check_components(names)
        present = [name for name in COMPONENTS if getattr(self, name) is not None]
        return self.freeze_all_but([name for name in present if name not in names])

    def _check_components(self, names: Sequence[str]) -> None:
        unknown = sorted(set(names) - set(COMPONENTS))
        if unknown:
            raise ValueError(f"unknown model component(s) {unknown}; choose from {list(COMPONENTS)}")
        absent = [name for name in names if getattr(self, name) is None]
        if absent:
            raise ValueError(f"this {self.config.name!r} model has no {', '.join(absent)}")

    def train(self, mode: bool = True) -> ZeroShapeW:
        super().train(mode)
        for name in self.frozen_components:
            getattr(self, name).eval()
        return self

    def component_parameters(self, name: str) -> list[nn.Parameter]:
        """Trainable parameters of one component (see COMPONENTS; an absent scene head has none)."""
        module = getattr(self, name)
        return [] if module is None else [p for p in module.parameters() if p.requires_grad]

    def parameter_counts(self) -> dict[str, int]:
        """Parameters per component; a frozen external text encoder counts as 0 (it is not ours)."""
        counts = {}
        for name in COMPONENTS:
            module = getattr(self, name)
            external = name == "text_encoder" and self.text_encoder.frozen_external
            counts[name] = 0 if external or module is None else sum(p.numel() for p in module.parameters())
        return counts

    def own_state_dict(self) -> dict[str, torch.Tensor]:
        """The weights a checkpoint stores: everything but a frozen external text encoder."""
        state = self.state_dict()
        if self.text_encoder.frozen_external:
            state = {k: v for k, v in state.items() if not k.startswith("text_encoder.")}
        return state

    def load_own_state_dict(self, state: dict[str, torch.Tensor], source: str | Path = "<state>") -> None:
        """Strict load of `own_state_dict()`-shaped weights, with an error that names what differs."""
        expected = self.own_state_dict()
        missing = sorted(set(expected) - set(state))
        unexpected = sorted(set(state) - set(expected))
        wrong_shape = sorted(k for k in set(expected) & set(state) if expected[k].shape != state[k].shape)
        if missing or unexpected or wrong_shape:
            details = []
            for label, keys in (
                ("missing", missing),
                ("unexpected", unexpected),
                ("wrong shape", wrong_shape),
            ):
                if keys:
                    shown = ", ".join(keys[:5]) + (f" … ({len(keys)} in all)" if len(keys) > 5 else "")
                    details.append(f"{label}: {shown}")
            raise ValueError(f"{source}: weights do not match the {self.config.name!r} model ({'; '.join(details)})")
        self.load_state_dict(state, strict=not self.text_encoder.frozen_external)
