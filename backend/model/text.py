"""Category prior: prompts → text embeddings [B, E] for FiLM and the occupancy queries.

Two implementations behind one interface (`TextEncoder`):
- `CategoryTableEncoder`: a learned embedding per known category, trained with the model and saved in
  its checkpoint. Needs no external weights; the project's default.
- `OpenCLIPTextEncoder`: OpenCLIP's frozen text tower, loaded from a *local* weights file (never from a
  hub). Frozen and external, so its weights are not part of the model's checkpoint; the checkpoint
  records which model it was.
The prompt "object" is the category-agnostic setting: every encoder accepts it.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from backend._torchvision_compat import ensure_torchvision
from backend.files import file_sha256

from .config import AGNOSTIC_PROMPT, TextEncoderConfig

log = logging.getLogger(__name__)


def normalise_prompt(prompt: str) -> str:
    """Lower-case, trimmed, single-spaced; an empty prompt means "object"."""
    cleaned = " ".join(prompt.lower().split())
    return cleaned or AGNOSTIC_PROMPT


class TextEncoder(nn.Module):
    """Interface: `forward(prompts) -> [B, embed_dim]`; `frozen_external` says whether its weights live
    outside the model's checkpoint."""

    embed_dim: int
    frozen_external: bool = False

    def forward(self, prompts: Sequence[str]) -> torch.Tensor:
        raise NotImplementedError

    def identity(self) -> dict[str, str]:
        """What a checkpoint records to find this encoder again."""
        raise NotImplementedError


class CategoryTableEncoder(TextEncoder):
    """A learned embedding per known category. Unknown prompts fall back to "object", with a warning."""

    def __init__(self, categories: Sequence[str], embed_dim: int):
        super().__init__()
        categories = tuple(normalise_prompt(c) for c in categories)
        if not categories or categories[0] != AGNOSTIC_PROMPT:
            raise ValueError(f'the category table must start with "{AGNOSTIC_PROMPT}", got {categories[:1]}')
        if len(set(categories)) != len(categories):
            raise ValueError("the category table lists a category twice")
        self.categories = categories
        self.index = {name: i for i, name in enumerate(categories)}
        self.embed_dim = embed_dim
        self.table = nn.Embedding(len(categories), embed_dim)
        nn.init.normal_(self.table.weight, std=0.5)
        self._warned: set[str] = set()

    def indices(self, prompts: Sequence[str]) -> torch.Tensor:
        result = []
        for prompt in prompts:
            name = normalise_prompt(prompt)
            if name not in self.index and name not in self._warned:
                self._warned.add(name)
                log.warning(
                    'category "%s" is not one this model knows; using "%s". Known: %s',
                    name,
                    AGNOSTIC_PROMPT,
                    ", ".join(self.categories),
                )
            result.append(self.index.get(name, 0))
        return torch.tensor(result, dtype=torch.long, device=self.table.weight.device)

    def forward(self, prompts: Sequence[str]) -> torch.Tensor:
        return self.table(self.indices(prompts))

    def identity(self) -> dict[str, str]:
        return {"kind": "category_table", "categories": ",".join(self.categories)}


class OpenCLIPTextEncoder(TextEncoder):
    """OpenCLIP text tower with weights from a local file; frozen; L2-normalised output.

    The file may be a full OpenCLIP model state dict (the visual tower is ignored) or a text-tower-only
    one, as safetensors or as a torch file (read with `weights_only=True`, never unpickled).
    Embeddings are cached per prompt: the tower is frozen, so a prompt always maps to the same vector.
    """

    frozen_external = True

    def __init__(self, model_name: str, weights_path: str | Path | None):
        super().__init__()
        ensure_torchvision()
        import open_clip
        from open_clip.model import CLIPTextCfg, _build_text_tower

        model_config = open_clip.get_model_config(model_name)
        if model_config is None:
            raise ValueError(f"unknown OpenCLIP model {model_name!r}; see open_clip.list_models()")
        self.model_name = model_name
        self.embed_dim = model_config["embed_dim"]
        self.tower = _build_text_tower(
            self.embed_dim,
            CLIPTextCfg(**model_config["text_cfg"]),
            quick_gelu=model_config.get("quick_gelu", False),
        )
        self.tokenizer = open_clip.get_tokenizer(model_name)
        self.weights_sha256 = ""
        if weights_path is not None:
            self.weights_sha256 = load_text_tower_weights(self.tower, Path(weights_path))
        self.tower.requires_grad_(False)
        self.tower.eval()
        self._cache: dict[str, torch.Tensor] = {}

    def train(self, mode: bool = True) -> OpenCLIPTextEncoder:
        # Frozen: stays in eval mode whatever the surrounding model does.
        super().train(mode)
        self.tower.eval()
        return self

    @torch.no_grad()
    def forward(self, prompts: Sequence[str]) -> torch.Tensor:
        names = [normalise_prompt(p) for p in prompts]
        device = self.tower.token_embedding.weight.device
        if not names:
            return torch.empty(0, self.embed_dim, device=device)
        missing = sorted({n for n in names if n not in self._cache or self._cache[n].device != device})
        if missing:
            features = F.normalize(self.tower(self.tokenizer(missing).to(device)), dim=-1)
            self._cache.update(zip(missing, features, strict=True))
        return torch.stack([self._cache[n] for n in names])

    def identity(self) -> dict[str, str]:
        return {"kind": "open_clip", "model": self.model_name, "weights_sha256": self.weights_sha256}


def read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """Tensors from a safetensors or torch file, without unpickling arbitrary objects."""
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such weights file")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        try:
            return load_file(str(path))
        except Exception as error:  # safetensors raises its own error types for damaged files
            raise ValueError(f"{path}: not a readable weights file ({error})") from error
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises several types for bad files
        raise ValueError(f"{path}: not a readable weights file ({error})") from error
    for wrapper in ("state_dict", "model", "model_state_dict"):
        if isinstance(data, dict) and isinstance(data.get(wrapper), dict):
            data = data[wrapper]
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a dict of tensors, found {type(data).__name__}")
    return data


def load_text_tower_weights(tower: nn.Module, path: Path) -> str:
    """Load OpenCLIP text weights into `tower` strictly; return the file's SHA-256."""
    state = read_state_dict(path)
    state = {k.removeprefix("module."): v for k, v in state.items()}
    state = {
        k: v
        for k, v in state.items()
        if not k.startswith("visual.") and k not in ("logit_scale", "logit_bias", "attn_mask")
    }
    try:
        tower.load_state_dict(state, strict=True)
    except RuntimeError as error:
        raise ValueError(f"{path}: does not match the OpenCLIP text tower: {error}") from error
    return file_sha256(path)


def build_text_encoder(config: TextEncoderConfig, open_clip_weights: str | Path | None = None) -> TextEncoder:
    """The encoder a config asks for. `open_clip_weights` is the local file for the OpenCLIP tower
    (random weights when None: only for tests and parameter counts)."""
    if config.kind == "category_table":
        return CategoryTableEncoder(config.categories, config.embed_dim)
    encoder = OpenCLIPTextEncoder(config.open_clip_model, open_clip_weights)
    if encoder.embed_dim != config.embed_dim:
        raise ValueError(
            f"OpenCLIP {config.open_clip_model} embeds to {encoder.embed_dim} dims, the config says {config.embed_dim}"
        )
    return encoder
