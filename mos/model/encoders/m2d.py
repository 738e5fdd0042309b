"""Masked Modeling Duo (M2D, M2D-AS, M2D-CLAP; nttcslab/m2d) checkpoints as a pretrained audio
encoder: `--audio-encoder FOLDER/checkpoint-N.pth`, a `.pth` file inside a folder named as the
releases are, e.g. `m2d_clap_vit_base-80x1001p16x16p16kpBpTI-2025/checkpoint-30.pth`.

The folder name gives the input: `<model>-<mels>x<frames>p<patch_f>x<patch_t>[p<16k|32k>][p...]`
(mel bins, frames per chunk, patch size, sample rate; more `p` fields name the CLAP text encoder
and are ignored here). The checkpoint gives the ViT: width from `pos_embed`, depth from `blocks.N`,
MLP width from `fc1`, patch size (checked against the name) from `patch_embed.proj`, heads =
width / 64 (ViT convention: base 768/12), `norm_stats` (mean, std of the log-mel; [-7.1, 4.2] when
absent, as in the 2022 files). Accepted layouts: a training checkpoint ({'model': ..., 'args':
argparse.Namespace, ...}), an encoder-only state dict, RuntimeM2D weights under `backbone.`, and
EVAR fine-tuned weights under `module.ar.runtime.backbone.`. Tensors of the other parts of a
training checkpoint (decoder, target encoder, offline predictor, CLAP projections and text
encoder, a fine-tuned head) are not used for frames; any other key, or a missing encoder tensor, is a
one-line MosError naming the file and the first keys.

In the graph (exportable to ONNX, any length), following portable_m2d.py:
- log-mel: centred STFT with reflect padding of n_fft/2 at each end of each clip (16 kHz: n_fft =
  window = 400, hop 160; 32 kHz: 800, 320), periodic Hann, power, 80 Slaney mel bands (librosa
  htk=False, norm='slaney') over 50 Hz - sr/2, log(x + float32 eps), (x - mean) / std;
- the log-mel cut into chunks of the model's frames (the last one shorter), each chunk's patch
  grid through the ViT (cls token, fixed pos_embed shortened for a short chunk, blocks, norm);
  a partial patch at a clip's end is zero-filled. Here all chunks run as one batch, each padded to
  the full chunk with its padding patches masked out of attention: the same result as running the
  shorter chunk alone, and a clip gives the same frames alone or zero-padded in a batch;
- frames: per patch column, the patch embeddings of all frequency rows stacked (portable_m2d's
  default features): [B, T, (mels / patch_f) * width], one frame per patch_t * hop samples
  (160 ms for 16x16 patches at 16 kHz). Frames of a full chunk past its last whole patch (e.g. the
  last 9 of 1001) are not seen, as in portable_m2d.

`FOLDER/checkpoint-N.pth#clap` (an M2D-CLAP checkpoint): the CLAP audio embedding instead, as
portable_m2d's encode_clap_audio with flat_features=True gives it for the 2025 checkpoints: every
valid patch embedding of all chunks (not stacked by frequency) through the checkpoint's semantic
`audio_proj` (a learned token prepended, 1-4 one-head transformer blocks with LayerNorm eps 1e-5,
that token's output, LayerNorm), then L2-normalised: one feature [B, 1, width] per clip. Only the
semantic projection (`audio_proj.sem_token`) is read; an MLP `audio_proj` (2024 checkpoints) is a
one-line error. The text tower is mos.model.encoders.m2d_clap_text's.
"""

from __future__ import annotations

import argparse
import re
from dataclasses import dataclass
from pathlib import Path

import torch
import torchaudio
from torch import nn

from mos.errors import MosError, one_line
from mos.files import sha256_file
from mos.model.encoders.base import EncoderInfo, PretrainedAudioEncoder, features_version
from mos.model.encoders.pickle_compat import load_weights_only
from mos.model.frontend import Spectrum, float32_region

KIND = "m2d"
CLAP_SUFFIX = "#clap"  # spec suffix: the projected CLAP audio embedding instead of frames
SEM_LN_EPS = 1e-5  # the semantic projection's LayerNorms (torch's default eps)
# Bump when this module's front end or forward changes the features it gives (caches key on it).
FEATURES_VERSION = 1
HEAD_DIM = 64  # width per attention head (ViT convention)
LN_EPS = 1e-6
F_MIN = 50.0
DEFAULT_NORM_STATS = (-7.1, 4.2)  # portable_m2d's default for checkpoints without norm_stats
RATES = {"16k": (16000, 400, 160), "32k": (32000, 800, 320)}  # sample rate, n_fft = window, hop
# Parts of a training / fine-tuning checkpoint that the encoder does not use.
UNUSED_PREFIXES = ("mask_token", "decoder_", "target_", "offline_predictor", "logit_scale", "audio_proj.",
                   "text_proj.", "text_encoder.", "head.", "module.head.", "module.ar.")
_NAME = re.compile(r"^(?P<cls>[^-]+)-(?P<mels>\d+)x(?P<frames>\d+)p(?P<pf>\d+)x(?P<pt>\d+)(?:p(?P<sr>\d+k))?(?:p[^-]*)?(?:-.*)?$")


@dataclass(frozen=True)
class M2DShape:
    """What a checkpoint's folder name and tensors say about the model."""

    mels: int
    frames: int  # log-mel frames per chunk (the model's input width)
    patch: tuple[int, int]  # (frequency, time)
    rate_name: str  # "16k" or "32k"
    width: int
    depth: int
    mlp: int
    heads: int

    @property
    def grid(self) -> tuple[int, int]:
        return self.mels // self.patch[0], self.frames // self.patch[1]

    @property
    def out_dim(self) -> int:
        return self.grid[0] * self.width


def parse_folder_name(path: Path) -> tuple[int, int, tuple[int, int], str]:
    """(mels, frames, (patch_f, patch_t), "16k"|"32k") from the checkpoint's folder name."""
    found = _NAME.match(path.parent.name)
    if not found:
        raise MosError(f"{path}: its folder {path.parent.name!r} is not named as M2D releases are "
                       "(e.g. m2d_vit_base-80x608p16x16-221006-mr7: <model>-<mels>x<frames>p<patch>x<patch>[p16k|p32k])")
    sr = found["sr"] or "16k"
    if sr not in RATES:
        raise MosError(f"{path}: sample rate {sr!r} in the folder name; M2D models take 16k or 32k")
    mels, frames, pf, pt = (int(found[k]) for k in ("mels", "frames", "pf", "pt"))
    if min(mels, frames, pf, pt) <= 0 or mels % pf or frames < pt:
        raise MosError(f"{path}: input {mels}x{frames} and patch {pf}x{pt} in the folder name do not fit")
    return mels, frames, (pf, pt), sr


def read_state(path: Path) -> dict[str, torch.Tensor]:
    """The encoder-side tensors of a released checkpoint, keys as the ViT names them (prefixes
    removed), read with weights_only=True (argparse.Namespace allowed for a training checkpoint's args)."""
    try:
        loaded = load_weights_only(path, [argparse.Namespace])
    except MosError:
        raise
    except Exception as exc:  # noqa: BLE001 - any unreadable file is a one-line error
        raise MosError(f"{path}: not a readable M2D checkpoint ({one_line(exc, limit=160)})") from None
    state = loaded.get("model", loaded) if isinstance(loaded, dict) else None
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise MosError(f"{path}: not an M2D checkpoint (no dict of tensors, alone or under 'model')")
    if any(str(k).startswith("backbone.") for k in state):  # RuntimeM2D weights
        state = {k[len("backbone."):]: v for k, v in state.items() if k.startswith("backbone.")}
    return {str(k).replace("module.ar.runtime.backbone.", ""): v for k, v in state.items()}


def _expected_keys(depth: int) -> list[str]:
    keys = ["cls_token", "pos_embed", "patch_embed.proj.weight", "patch_embed.proj.bias", "norm.weight", "norm.bias"]
    for i in range(depth):
        for part in ("norm1", "attn.qkv", "attn.proj", "norm2", "mlp.fc1", "mlp.fc2"):
            keys += [f"blocks.{i}.{part}.weight", f"blocks.{i}.{part}.bias"]
    return keys


def check_state(path: Path, state: dict[str, torch.Tensor]) -> M2DShape:
    """The model's shape from the folder name and tensors; a one-line MosError for missing or
    unexpected keys or shapes that disagree with the folder name."""
    mels, frames, patch, sr = parse_folder_name(path)
    depth = 1 + max((int(k.split(".")[1]) for k in state if re.match(r"^blocks\.\d+\.", k)), default=-1)
    expected = _expected_keys(depth)
    missing = [k for k in expected if k not in state]
    known = set(expected) | {"norm_stats"}
    unexpected = [k for k in state if k not in known and not k.startswith(UNUSED_PREFIXES)]
    if depth == 0 or missing or unexpected:
        raise MosError(f"{path}: not the M2D encoder's tensors (missing {', '.join(missing[:3]) or 'none'}"
                       f"{', ...' if len(missing) > 3 else ''}; unexpected {', '.join(unexpected[:3]) or 'none'}"
                       f"{', ...' if len(unexpected) > 3 else ''})")
    width = int(state["pos_embed"].shape[-1])
    proj = tuple(state["patch_embed.proj.weight"].shape)
    if len(proj) != 4 or proj[0] != width or proj[1] != 1 or tuple(proj[2:]) != patch:
        raise MosError(f"{path}: patch_embed.proj.weight is {list(proj)}, not [{width}, 1, {patch[0]}, {patch[1]}] "
                       "as the folder name says")
    shape = M2DShape(mels, frames, patch, sr, width, depth, int(state["blocks.0.mlp.fc1.weight"].shape[0]),
                     max(width // HEAD_DIM, 1))
    tokens = 1 + shape.grid[0] * shape.grid[1]
    if tuple(state["pos_embed"].shape) != (1, tokens, width):
        raise MosError(f"{path}: pos_embed is {list(state['pos_embed'].shape)}, not [1, {tokens}, {width}] for input "
                       f"{mels}x{frames} and patch {patch[0]}x{patch[1]} (the folder name)")
    if width % shape.heads:
        raise MosError(f"{path}: width {width} is not a multiple of {HEAD_DIM} (the heads cannot be inferred)")
    return shape


def split_spec(spec: str) -> tuple[str, bool]:
    """(the checkpoint path, whether `#clap` asks for the CLAP audio embedding)."""
    if spec.lower().endswith(CLAP_SUFFIX):
        return spec[: -len(CLAP_SUFFIX)], True
    return spec, False


def semantic_depth(path: Path, state: dict[str, torch.Tensor]) -> int:
    """How many blocks the checkpoint's semantic audio projection has, or a one-line MosError."""
    if "audio_proj.sem_token" not in state:
        kind = "an MLP audio_proj (a 2024 M2D-CLAP)" if "audio_proj.0.weight" in state else "no audio_proj"
        raise MosError(f"{path}{CLAP_SUFFIX}: the checkpoint has {kind}; the CLAP audio embedding is read from "
                       "the semantic projection of the 2025 M2D-CLAP checkpoints (audio_proj.sem_token)")
    return 1 + max((int(k.split(".")[2]) for k in state if re.match(r"^audio_proj\.sem_blocks\.\d+\.", k)), default=-1)


def resolve(spec: str) -> EncoderInfo:
    """An M2D checkpoint path (with `#clap`: its CLAP audio embedding) -> EncoderInfo (16 or 32
    kHz, any length), or a one-line MosError."""
    base, clap = split_spec(spec)
    path = Path(base)
    if not path.is_file():
        raise MosError(f"{base}: no such M2D checkpoint file")
    parse_folder_name(path)  # a misnamed folder fails before the file is read
    state = read_state(path)
    shape = check_state(path, state)
    params = sum(v.numel() for k, v in state.items() if not k.startswith(UNUSED_PREFIXES) and k != "norm_stats")
    if clap:
        semantic_depth(path, state)
        params += sum(v.numel() for k, v in state.items() if k.startswith("audio_proj."))
    return EncoderInfo(
        kind=KIND,
        name=f"M2D {path.parent.name}/{path.name} (ViT {shape.depth}x{shape.width}, {shape.rate_name}"
             f"{', CLAP audio embedding' if clap else ''})",
        source=str(path.resolve()) + (CLAP_SUFFIX if clap else ""),
        sample_rate=RATES[shape.rate_name][0],
        out_dim=shape.width if clap else shape.out_dim,
        sha256=sha256_file(path),
        code_version=features_version(KIND + ("-clap" if clap else ""), FEATURES_VERSION),
        window_seconds=None,
        padding_invariant=True,
        parameters=params,
    )


class Block(nn.Module):
    """A pre-norm transformer block with timm's parameter names, attention masked by key."""

    def __init__(self, width: int, heads: int, mlp: int, eps: float = LN_EPS) -> None:
        super().__init__()
        self.heads = heads
        self.norm1 = nn.LayerNorm(width, eps=eps)
        self.attn = nn.Module()
        self.attn.qkv = nn.Linear(width, 3 * width)
        self.attn.proj = nn.Linear(width, width)
        self.norm2 = nn.LayerNorm(width, eps=eps)
        self.mlp = nn.Module()
        self.mlp.fc1 = nn.Linear(width, mlp)
        self.mlp.fc2 = nn.Linear(mlp, width)

    def attention(self, x: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
        n, tokens, width = x.shape
        qkv = self.attn.qkv(x).reshape(n, tokens, 3, self.heads, width // self.heads).permute(2, 0, 3, 1, 4)
        q, k, v = qkv[0], qkv[1], qkv[2]
        scores = torch.matmul(q, k.transpose(-2, -1)) * (width // self.heads) ** -0.5
        scores = scores.masked_fill(~keep[:, None, None, :], torch.finfo(scores.dtype).min)
        out = torch.matmul(scores.softmax(dim=-1), v).transpose(1, 2).reshape(n, tokens, width)
        return self.attn.proj(out)

    def forward(self, x: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
        x = x + self.attention(self.norm1(x), keep)
        return x + self.mlp.fc2(nn.functional.gelu(self.mlp.fc1(self.norm2(x))))


class M2DViT(nn.Module):
    """The M2D encoder ViT (key names as in the checkpoints): chunks [N, 1, mels, frames] with
    the number of valid patch columns of each [N] -> tokens [N, grid_f * grid_t, width]."""

    def __init__(self, shape: M2DShape) -> None:
        super().__init__()
        self.shape = shape
        gf, gt = shape.grid
        self.cls_token = nn.Parameter(torch.zeros(1, 1, shape.width))
        self.pos_embed = nn.Parameter(torch.zeros(1, 1 + gf * gt, shape.width))
        self.patch_embed = nn.Module()
        self.patch_embed.proj = nn.Conv2d(1, shape.width, kernel_size=shape.patch, stride=shape.patch)
        self.blocks = nn.ModuleList(Block(shape.width, shape.heads, shape.mlp) for _ in range(shape.depth))
        self.norm = nn.LayerNorm(shape.width, eps=LN_EPS)
        self.register_buffer("norm_stats", torch.tensor(DEFAULT_NORM_STATS))
        self.register_buffer("column", torch.arange(gf * gt) % gt, persistent=False)  # each patch's time column

    def forward(self, chunks: torch.Tensor, columns: torch.Tensor) -> torch.Tensor:
        x = self.patch_embed.proj(chunks).flatten(2).transpose(1, 2) + self.pos_embed[:, 1:]
        cls = (self.cls_token + self.pos_embed[:, :1]).expand(x.shape[0], -1, -1)
        x = torch.cat([cls, x], dim=1)
        keep = torch.cat([torch.ones_like(columns[:, None], dtype=torch.bool),
                          self.column[None, :] < columns[:, None]], dim=1)
        for block in self.blocks:
            x = block(x, keep)
        return self.norm(x)[:, 1:]


def mel_filters(rate: int, n_fft: int, mels: int) -> torch.Tensor:
    """[n_fft/2 + 1, mels] Slaney mel filters over 50 Hz - rate/2 (librosa htk=False, norm='slaney')."""
    return torchaudio.functional.melscale_fbanks(n_fft // 2 + 1, F_MIN, rate / 2, mels, rate,
                                                 norm="slaney", mel_scale="slaney")


class M2DLogMel(nn.Module):
    """waveform [B, N] + lengths [B] -> un-normalised log-mel [B, mels, T] (zero past each clip's
    length // hop + 1 frames) and those frame counts; each clip reflect-padded at its own ends."""

    def __init__(self, rate: int, n_fft: int, hop: int, mels: int) -> None:
        super().__init__()
        self.n_fft, self.hop = n_fft, hop
        self.spectrum = Spectrum(torch.hann_window(n_fft, periodic=True, dtype=torch.float64), n_fft, hop)
        self.register_buffer("mel_rows", self.spectrum.rows_of(mel_filters(rate, n_fft, mels).float()), persistent=False)

    def forward(self, waveform: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        half = self.n_fft // 2
        lengths = lengths.to(torch.int64)
        # sample p of the padded clip is x[|p - half|], reflected at the clip's end, zero outside
        src = torch.arange(waveform.shape[1] + 2 * half, device=waveform.device)[None, :] - half
        last = (lengths - 1)[:, None]
        src = torch.where(src < 0, -src, src)
        src = torch.where(src > last, 2 * last - src, src)
        inside = (src >= 0) & (src <= last)
        index = torch.clamp(src, min=0).minimum(torch.clamp(last, min=0))
        padded = torch.gather(waveform, 1, index) * inside.to(waveform.dtype)
        power = self.spectrum.power(padded)  # [B, rows, T], T = N // hop + 1
        mel = torch.matmul(power.transpose(1, 2), self.mel_rows).transpose(1, 2)
        logmel = torch.log(mel + torch.finfo(torch.float32).eps)
        frames = torch.div(lengths, self.hop, rounding_mode="floor") + 1
        keep = torch.arange(logmel.shape[2], device=logmel.device)[None, :] < frames[:, None]
        return logmel * keep[:, None, :].to(logmel.dtype), frames


class M2DAudioEncoder(PretrainedAudioEncoder):
    """The M2D ViT behind its in-graph log-mel: frames [B, T, grid_f * width], one per patch column."""

    def __init__(self, info: EncoderInfo, backbone: M2DViT) -> None:
        super().__init__()
        self.info = info
        self.backbone = backbone
        shape = backbone.shape
        rate, n_fft, hop = RATES[shape.rate_name]
        self.front_end = M2DLogMel(rate, n_fft, hop, shape.mels)

    def normalised_log_mel(self, waveform: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """[B, mels, T] (x - mean) / std, zero past each clip's frames, and the frame counts."""
        logmel, frames = self.front_end(waveform, lengths)
        mean, std = self.backbone.norm_stats[0], self.backbone.norm_stats[1]
        keep = torch.arange(logmel.shape[2], device=logmel.device)[None, :] < frames[:, None]
        return (logmel - mean) / std * keep[:, None, :].to(logmel.dtype), frames

    def patch_tokens(self, waveform: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Each chunk's patch embeddings [B, chunks, grid_f, grid_t, width] and its valid patch
        columns [B, chunks] (a partial patch at the clip's end counts, zero-filled)."""
        shape = self.backbone.shape
        gf, gt = shape.grid
        unit, pt = shape.frames, shape.patch[1]
        x, frames = self.normalised_log_mel(waveform.float(), lengths)
        b, mels, t = x.shape
        chunks = torch.div(t + unit - 1, unit, rounding_mode="floor")
        x = nn.functional.pad(x, (0, chunks * unit - t))
        x = x.reshape(b, mels, -1, unit).transpose(1, 2).reshape(-1, 1, mels, unit)  # [B * chunks, 1, mels, unit]
        starts = torch.arange(x.shape[0] // b, device=x.device) * unit
        in_chunk = torch.clamp(frames[:, None] - starts[None, :], min=0, max=unit)
        columns = torch.clamp(torch.div(in_chunk + pt - 1, pt, rounding_mode="floor"), max=gt)  # [B, chunks]
        tokens = self.backbone(x, columns.reshape(-1))  # [B * chunks, gf * gt, D]
        return tokens.reshape(b, -1, gf, gt, tokens.shape[-1]), columns

    def features(self, waveform: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        gf = self.backbone.shape.grid[0]
        with float32_region(waveform.device.type):
            tokens, columns = self.patch_tokens(waveform, lengths)
            b, _, _, gt, d = tokens.shape
            out = tokens.permute(0, 1, 3, 2, 4).reshape(b, -1, gf * d)
            counts = columns.sum(dim=1)
            keep = torch.arange(out.shape[1], device=out.device)[None, :] < counts[:, None]
            return out * keep[:, :, None].to(out.dtype), counts


class SemanticProjection(nn.Module):
    """M2D-CLAP's semantic audio projection (portable_m2d's AudioToSemantic, key names as in the
    checkpoints): patch tokens [B, N, D] and which are valid [B, N] -> [B, D]."""

    def __init__(self, width: int, depth: int, mlp: int) -> None:
        super().__init__()
        self.sem_token = nn.Parameter(torch.zeros(1, 1, width))
        self.sem_blocks = nn.ModuleList(Block(width, 1, mlp, SEM_LN_EPS) for _ in range(depth))
        self.norm = nn.LayerNorm(width, eps=SEM_LN_EPS)

    def forward(self, tokens: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
        x = torch.cat([self.sem_token.expand(tokens.shape[0], -1, -1), tokens], dim=1)
        keep = torch.cat([torch.ones_like(keep[:, :1]), keep], dim=1)
        for block in self.sem_blocks:
            x = block(x, keep)
        return self.norm(x[:, 0])


class M2DClapAudioEncoder(M2DAudioEncoder):
    """The M2D-CLAP audio tower + semantic projection: one L2-normalised embedding [B, 1, width]."""

    def __init__(self, info: EncoderInfo, backbone: M2DViT, audio_proj: SemanticProjection) -> None:
        super().__init__(info, backbone)
        self.audio_proj = audio_proj

    def features(self, waveform: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        with float32_region(waveform.device.type):
            tokens, columns = self.patch_tokens(waveform, lengths)
            b, _, gf, gt, d = tokens.shape
            keep = torch.arange(gt, device=tokens.device)[None, None, None, :] < columns[:, :, None, None]
            keep = keep.expand(-1, -1, gf, -1).reshape(b, -1)
            pooled = self.audio_proj(tokens.reshape(b, -1, d), keep)
            emb = pooled / pooled.norm(dim=-1, keepdim=True).clamp_min(1e-12)
            return emb.unsqueeze(1), torch.ones_like(lengths, dtype=torch.int64)


def build(info: EncoderInfo) -> M2DAudioEncoder:
    """The ViT with the checkpoint's encoder tensors (every one must be there); with `#clap`, and
    the semantic audio projection's."""
    base, clap = split_spec(info.source)
    path = Path(base)
    state = read_state(path)
    shape = check_state(path, state)
    net = M2DViT(shape)
    weights = {k: v for k, v in state.items() if not k.startswith(UNUSED_PREFIXES)}
    weights.setdefault("norm_stats", torch.tensor(DEFAULT_NORM_STATS))
    weights["norm_stats"] = weights["norm_stats"].reshape(-1).float()
    if weights["norm_stats"].numel() != 2:
        raise MosError(f"{path}: norm_stats has {weights['norm_stats'].numel()} values, not (mean, std)")
    missing, unexpected = net.load_state_dict(weights, strict=False)
    if missing or unexpected:
        raise MosError(f"{path}: M2D weights do not fit the network "
                       f"(missing {', '.join(missing[:3]) or 'none'}; unexpected {', '.join(unexpected[:3]) or 'none'})")
    if not clap:
        return M2DAudioEncoder(info, net.eval())
    depth = semantic_depth(path, state)
    prefix = "audio_proj."
    sem = {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}
    mlp = int(sem["sem_blocks.0.mlp.fc1.weight"].shape[0]) if "sem_blocks.0.mlp.fc1.weight" in sem else shape.width
    proj = SemanticProjection(shape.width, depth, mlp)
    try:
        missing, unexpected = proj.load_state_dict(sem, strict=False)
    except RuntimeError as exc:
        raise MosError(f"{path}: audio_proj tensors do not fit ({str(exc).splitlines()[-1].strip()})") from None
    if missing or unexpected:
        raise MosError(f"{path}: audio_proj weights do not fit the semantic projection (missing "
                       f"{', '.join(missing[:3]) or 'none'}; unexpected {', '.join(unexpected[:3]) or 'none'})")
    return M2DClapAudioEncoder(info, net.eval(), proj.eval())
