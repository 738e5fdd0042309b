"""Tiny pretrained-encoder directories built here (random weights, `save_pretrained`, no
download) for the encoder, trainer, export and runtime tests."""

from __future__ import annotations

from pathlib import Path

PROJECTION = 24
HIDDEN = 32  # the tiny speech models' width and depth
LAYERS = 2
M2D_NORM_STATS = (-6.5, 3.9)  # the tiny M2D checkpoints' norm_stats
CAPTIONS = ["a dog barks twice", "rain on a roof, then drums and a piano", "music"]


TEXT_HIDDEN = 32  # the tiny text encoder's feature width (MiniLM's is 384)
TEXT_WORDS = (
    "a an and at in on of over the then while with under before after about into from to for by "
    "dog dogs cat car barks bark twice rain roof window tin soft softly gentle loud quiet calm distant "
    "piano guitar drums strings choir jazz radio old music melody song tone tones concert orchestra "
    "plays play playing sing sings birds thunder ocean waves fast slow steady bright hertz number "
    "hums crackles cafe fade swell long very caption sound tuning up"
).split()


def make_tiny_text_encoder(dest: Path) -> Path:
    """A tiny random BERT (2 layers of width TEXT_HIDDEN, as MiniLM is a 6-layer BERT) and an
    uncased WordPiece tokenizer (MiniLM's kind: a few whole words, every letter and digit alone
    and as a `##` continuation, so any caption tokenizes), saved into `dest`: a local text
    encoder for `--text-encoder PATH` where a test is not about MiniLM itself."""
    import string

    import torch
    from tokenizers import BertWordPieceTokenizer
    from transformers import BertConfig, BertModel, BertTokenizerFast

    dest.mkdir(parents=True, exist_ok=True)
    chars = string.ascii_lowercase + string.digits
    vocab = list(dict.fromkeys(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *string.punctuation, *chars,
                                *(f"##{c}" for c in chars), *TEXT_WORDS]))
    backend = BertWordPieceTokenizer({token: i for i, token in enumerate(vocab)}, lowercase=True)
    BertTokenizerFast(tokenizer_object=backend._tokenizer, do_lower_case=True, model_max_length=128,
                      unk_token="[UNK]", sep_token="[SEP]", pad_token="[PAD]", cls_token="[CLS]",
                      mask_token="[MASK]").save_pretrained(str(dest))
    torch.manual_seed(0)
    config = BertConfig(vocab_size=len(vocab), hidden_size=TEXT_HIDDEN, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=64, max_position_embeddings=128)
    BertModel(config).eval().save_pretrained(str(dest))
    return dest


def tiny_tokenizer(dest: Path) -> None:
    """A byte-level BPE tokenizer with RoBERTa's special tokens (<s>=0, <pad>=1, </s>=2), trained
    here on a few captions and saved as CLAP's tokenizer (RobertaTokenizerFast)."""
    from tokenizers import ByteLevelBPETokenizer
    from tokenizers.processors import RobertaProcessing
    from transformers import RobertaTokenizerFast

    tok = ByteLevelBPETokenizer()
    tok.train_from_iterator(CAPTIONS * 4 + ["the sound of a cat and a car"], vocab_size=300, min_frequency=1,
                            special_tokens=["<s>", "<pad>", "</s>", "<unk>", "<mask>"], show_progress=False)
    tok.post_processor = RobertaProcessing(("</s>", tok.token_to_id("</s>")), ("<s>", tok.token_to_id("<s>")))
    fast = RobertaTokenizerFast(tokenizer_object=tok._tokenizer, bos_token="<s>", eos_token="</s>", sep_token="</s>",
                                cls_token="<s>", unk_token="<unk>", pad_token="<pad>", mask_token="<mask>")
    fast.save_pretrained(str(dest))


def tiny_clap_config(**audio: object):
    """A small valid ClapConfig: HTSAT needs spec_size = 256 for 64 mels and 1001 frames (the
    1001 x 64 log-mel is resized to 1024 x 64, folded into a 256 x 256 image); patches of 4,
    windows of 8, two stages; a 1-layer RoBERTa text tower."""
    from transformers import ClapConfig

    audio_config = dict(spec_size=256, num_mel_bins=64, patch_size=4, patch_stride=[4, 4], patch_embeds_hidden_size=8,
                        depths=[1, 1], num_attention_heads=[1, 2], window_size=8, hidden_size=16)
    audio_config.update(audio)
    text_config = dict(vocab_size=300, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                       intermediate_size=32, max_position_embeddings=80)
    return ClapConfig(text_config=text_config, audio_config=audio_config, projection_dim=PROJECTION)


def make_tiny_clap(dest: Path) -> Path:
    """A tiny random ClapModel with LAION's extractor settings and a tiny tokenizer in `dest`."""
    import torch
    from transformers import ClapFeatureExtractor, ClapModel

    torch.manual_seed(0)
    model = ClapModel(tiny_clap_config()).eval()
    # Non-trivial BatchNorm statistics, so that the extractor's dB scale matters to the output.
    bn = model.audio_model.audio_encoder.batch_norm
    bn.running_mean.uniform_(-60.0, -20.0)
    bn.running_var.uniform_(100.0, 400.0)
    model.save_pretrained(str(dest))
    # LAION's settings (laion/clap-htsat-unfused): 50-14000 Hz; its saved truncation is irrelevant here.
    ClapFeatureExtractor(frequency_min=50, frequency_max=14000, truncation="fusion").save_pretrained(str(dest))
    tiny_tokenizer(dest)
    return dest


# The real models' frame rate (a 320-sample stride, 50 frames/s at 16 kHz): tiny_config's 80
# gives 4x the frames, and export verification runs PyTorch on a whole 60 s clip, where WavLM's
# relative position bias ([heads, T, T]) then peaks at about 19 GB.
REAL_FRAME_RATE = dict(conv_kernel=(10, 8, 8), conv_stride=(5, 8, 8))


def tiny_config(kind: str, norm: str, **changes: object):
    """A small valid config: 3 conv layers (stride 80, 200 frames/s), 2 transformer layers;
    `changes` override any of its settings (e.g. REAL_FRAME_RATE)."""
    from transformers import Data2VecAudioConfig, HubertConfig, Wav2Vec2Config, WavLMConfig

    kw: dict = dict(hidden_size=HIDDEN, num_hidden_layers=LAYERS, num_attention_heads=2, intermediate_size=64,
                    conv_dim=(32, 32, 32), conv_kernel=(10, 3, 3), conv_stride=(5, 4, 4),
                    num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=2)
    if kind == "data2vec-audio":
        kw.update(num_conv_pos_embeddings=2, conv_pos_kernel_size=5)  # its positional conv: 2 layers of kernel 5
        return Data2VecAudioConfig(**{**kw, **changes})
    kw.update(feat_extract_norm=norm, do_stable_layer_norm=norm == "layer")  # as the base / large models pair them
    kw.update(changes)
    return {"wav2vec2": Wav2Vec2Config, "hubert": HubertConfig, "wavlm": WavLMConfig}[kind](**kw)


def save_tiny(dest: Path, kind: str, norm: str, head: str = "", **changes: object) -> Path:
    """A tiny random model of `kind` (AutoModel, or AutoModelFor`head`) saved into `dest`;
    `changes` go to tiny_config."""
    import torch
    import transformers as tf

    torch.manual_seed(0)
    auto = getattr(tf, f"AutoModelFor{head}") if head else tf.AutoModel
    auto.from_config(tiny_config(kind, norm, **changes)).save_pretrained(str(dest))
    return dest


def tiny_ast_config(max_length: int = 1024):
    """A small valid ASTConfig: 128 mel bins and `max_length` frames (AST's), 16 x 16 patches
    without overlap (8 x 64 of them for 1024 frames), 2 layers of width HIDDEN."""
    from transformers import ASTConfig

    return ASTConfig(hidden_size=HIDDEN, num_hidden_layers=LAYERS, num_attention_heads=2, intermediate_size=64,
                     num_mel_bins=128, max_length=max_length, frequency_stride=16, time_stride=16)


def make_tiny_ast(dest: Path, max_length: int = 1024, head: bool = False) -> Path:
    """A tiny random ASTModel (or ASTForAudioClassification with `head`) and an ASTFeatureExtractor
    with the AudioSet statistics and the same max_length, saved into `dest`."""
    import torch
    from transformers import ASTFeatureExtractor, ASTForAudioClassification, ASTModel

    torch.manual_seed(0)
    model = (ASTForAudioClassification if head else ASTModel)(tiny_ast_config(max_length)).eval()
    model.save_pretrained(str(dest))
    ASTFeatureExtractor(max_length=max_length).save_pretrained(str(dest))
    return dest


def count_encoded_windows(monkeypatch, encoder_class: type) -> list[int]:
    """Counts, per call, the clip windows `encoder_class.features` is run on (monkeypatched for the
    test): the list it appends to."""
    calls: list[int] = []
    original = encoder_class.features

    def counting(self, waveform, lengths):
        calls.append(int(waveform.shape[0]))
        return original(self, waveform, lengths)

    monkeypatch.setattr(encoder_class, "features", counting)
    return calls


def m2d_encoder_tensors(mels: int, frames: int, patch: tuple[int, int], width: int, depth: int, seed: int) -> dict:
    """Random M2D encoder tensors named and shaped as in a released checkpoint."""
    import torch

    g = torch.Generator().manual_seed(seed)
    tokens = 1 + (mels // patch[0]) * (frames // patch[1])

    def rand(*shape: int, scale: float = 0.05) -> torch.Tensor:
        return torch.randn(*shape, generator=g) * scale

    state = {"cls_token": rand(1, 1, width), "pos_embed": rand(1, tokens, width, scale=0.5),
             "patch_embed.proj.weight": rand(width, 1, *patch, scale=0.2), "patch_embed.proj.bias": rand(width),
             "norm.weight": 1 + rand(width), "norm.bias": rand(width)}
    for i in range(depth):
        for name, shape in (("norm1", (width,)), ("attn.qkv", (3 * width, width)), ("attn.proj", (width, width)),
                            ("norm2", (width,)), ("mlp.fc1", (4 * width, width)), ("mlp.fc2", (width, 4 * width))):
            state[f"blocks.{i}.{name}.weight"] = (1 + rand(*shape)) if name.startswith("norm") else rand(*shape, scale=0.2)
            state[f"blocks.{i}.{name}.bias"] = rand(shape[0])
    return state


def make_tiny_m2d(root: Path, name: str = "m2d_vit_base-80x50p16x16-221006-mr7", width: int = 64, depth: int = 2,
                  layout: str = "training", seed: int = 0) -> Path:
    """A small checkpoint in a folder named like a release. `layout`: "training" ({'model': encoder +
    decoder + target encoder + CLAP projections + norm_stats, 'optimizer', 'epoch', 'scaler', 'args':
    an argparse.Namespace}, as MAE-style training saves it),
    "enconly" (the encoder's state dict), "runtime" (RuntimeM2D's 'backbone.' keys) or "evar" (an
    EVAR fine-tuned file: 'module.ar.runtime.backbone.' keys, the front end's and the head's beside)."""
    import argparse

    import torch

    from mos.model.encoders import m2d

    mels, frames, patch, _ = m2d.parse_folder_name(Path(name) / "x.pth")
    enc = m2d_encoder_tensors(mels, frames, patch, width, depth, seed)
    enc["norm_stats"] = torch.tensor(M2D_NORM_STATS)
    if layout == "enconly":
        saved: dict = enc
    elif layout == "runtime":
        saved = {"model": {f"backbone.{k}": v for k, v in enc.items()}}
    elif layout == "evar":
        saved = {**{f"module.ar.runtime.backbone.{k}": v for k, v in enc.items()},
                 "module.ar.runtime.to_spec.mel_basis": torch.zeros(80, 201),
                 "module.head.mlp.mlp.0.weight": torch.zeros(10, 5 * width)}
    else:
        extra = {"mask_token": torch.zeros(1, 1, 32), "decoder_embed.weight": torch.zeros(32, width),
                 "decoder_pos_embed": torch.zeros(1, enc["pos_embed"].shape[1], 32),
                 "decoder_blocks.0.norm1.weight": torch.ones(32), "decoder_pred.weight": torch.zeros(width, 32),
                 "target_blocks.0.norm1.weight": torch.ones(width), "target_norm.weight": torch.ones(width),
                 "audio_proj.0.weight": torch.zeros(width, width), "text_proj.weight": torch.zeros(width, 48)}
        optimizer = {"state": {0: {"step": torch.tensor(10.0), "exp_avg": torch.zeros(width)}},
                     "param_groups": [{"lr": 1e-4, "betas": (0.9, 0.95), "weight_decay": 0.05, "params": [0]}]}
        saved = {"model": {**enc, **extra}, "optimizer": optimizer, "epoch": 1, "scaler": {"scale": 65536.0},
                 "args": argparse.Namespace(model="m2d_vit_base", input_size=[80, frames], lr=1e-4, norm_stats=None)}
    path = root / name / "checkpoint-1.pth"
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(saved, path)
    return path


M2D_CLAP_NAME = "m2d_clap_vit_base-80x50p16x16p16kpBpTI-2025"  # BERT text model, its weights included (TI)


def make_tiny_m2d_clap(root: Path, name: str = M2D_CLAP_NAME, width: int = 64, depth: int = 2, seed: int = 0) -> Path:
    """A small M2D-CLAP training checkpoint in the 2025 release layout: the encoder, norm_stats, the
    semantic audio projection (`audio_proj.sem_token`, one 1-head block of MLP ratio 1, `norm`),
    `text_proj` (Linear text width -> width) and the tuned BERT text model under
    `text_encoder.text_encoder.` (random weights other than the folder's), with the tiny BERT
    folder (config, tokenizer, its own weights) saved beside it as `bert-base-uncased/`. A name
    with `pA` instead of `pB` makes that folder `gte-base/`; without `pTI` no text weights are
    stored in the checkpoint (the folder's are used)."""
    import argparse

    import torch
    from transformers import BertModel

    from mos.model.encoders import m2d

    path = root / name / "checkpoint-30.pth"
    extra = name.split("-")[1].split("p")[3:]
    gte, included = extra[:1] == ["A"], extra[1:2] == ["TI"]
    text_dir = make_tiny_text_encoder(path.parent / ("gte-base" if gte else "bert-base-uncased"))
    mels, frames, patch, _ = m2d.parse_folder_name(path)
    state = m2d_encoder_tensors(mels, frames, patch, width, depth, seed)
    state["norm_stats"] = torch.tensor(M2D_NORM_STATS)
    g = torch.Generator().manual_seed(seed + 7)

    def rand(*shape: int, scale: float = 0.2) -> torch.Tensor:
        return torch.randn(*shape, generator=g) * scale

    state["audio_proj.sem_token"] = rand(1, 1, width, scale=0.5)
    for part, shape in (("norm1", (width,)), ("attn.qkv", (3 * width, width)), ("attn.proj", (width, width)),
                        ("norm2", (width,)), ("mlp.fc1", (width, width)), ("mlp.fc2", (width, width))):
        state[f"audio_proj.sem_blocks.0.{part}.weight"] = (1 + rand(*shape, scale=0.05)) if part.startswith("norm") else rand(*shape)
        state[f"audio_proj.sem_blocks.0.{part}.bias"] = rand(shape[0], scale=0.05)
    state["audio_proj.norm.weight"], state["audio_proj.norm.bias"] = 1 + rand(width, scale=0.05), rand(width, scale=0.05)
    state["text_proj.weight"], state["text_proj.bias"] = rand(width, TEXT_HIDDEN), rand(width, scale=0.05)
    if included:
        torch.manual_seed(seed + 11)
        tuned = BertModel(BertModel.config_class.from_pretrained(str(text_dir))).eval()
        prefix = "text_encoder.model." if gte else "text_encoder.text_encoder."
        state.update({f"{prefix}{k}": v for k, v in tuned.state_dict().items()})
    state["logit_scale"] = torch.tensor(2.6)
    torch.save({"model": state, "epoch": 30,
                "args": argparse.Namespace(model="m2d_clap_vit_base", input_size=[mels, frames])}, path)
    return path


def assert_onnx_export_matches(encoder, path: Path, generated, rate: int, example_seconds: float,
                               lengths_seconds: list[list[float]], time_axis: str) -> None:
    """Export an encoder (waveform, lengths) -> (frames, counts) traced on two clips of
    `example_seconds`, then run it with ONNX Runtime on batches of other sizes and clip lengths
    (`lengths_seconds`, one list per batch, clips from `generated(seconds, seed)`): the counts equal
    PyTorch's and the frames agree within 1e-4."""
    import numpy as np
    import onnxruntime as ort
    import torch

    example = torch.from_numpy(generated(example_seconds))[None].repeat(2, 1)
    torch.onnx.export(encoder, (example, torch.tensor([example.shape[1]] * 2)), str(path), opset_version=17,
                      input_names=["waveform", "lengths"], output_names=["frames", "counts"], dynamo=False,
                      dynamic_axes={"waveform": {0: "batch", 1: "samples"}, "lengths": {0: "batch"},
                                    "frames": {0: "batch", 1: time_axis}, "counts": {0: "batch"}})
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    for seconds in lengths_seconds:
        lengths = [int(s * rate) for s in seconds]
        wave = np.zeros((len(lengths), max(lengths)), np.float32)
        for i, n in enumerate(lengths):
            wave[i, :n] = generated(n / rate, seed=i)
        got, counts = session.run(None, {"waveform": wave, "lengths": np.array(lengths, np.int64)})
        with torch.no_grad():
            ref, ref_counts = encoder(torch.from_numpy(wave), torch.tensor(lengths))
        assert counts.tolist() == ref_counts.tolist()
        assert np.max(np.abs(got - ref.numpy())) < 1e-4
