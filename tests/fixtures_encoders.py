"""Tiny pretrained-encoder directories built here (random weights, `save_pretrained`, no
download) for the encoder and trainer tests."""

from __future__ import annotations

from pathlib import Path

PROJECTION = 24
HIDDEN = 32  # the tiny speech models' width and depth
LAYERS = 2
CAPTIONS = ["a dog barks twice", "rain on a roof, then drums and a piano", "music"]


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


def tiny_config(kind: str, norm: str):
    """A small valid config: 3 conv layers (stride 80, 200 frames/s), 2 transformer layers."""
    from transformers import Data2VecAudioConfig, HubertConfig, Wav2Vec2Config, WavLMConfig

    kw: dict = dict(hidden_size=HIDDEN, num_hidden_layers=LAYERS, num_attention_heads=2, intermediate_size=64,
                    conv_dim=(32, 32, 32), conv_kernel=(10, 3, 3), conv_stride=(5, 4, 4),
                    num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=2)
    if kind == "data2vec-audio":
        kw.update(num_conv_pos_embeddings=2, conv_pos_kernel_size=5)  # its positional conv: 2 layers of kernel 5
        return Data2VecAudioConfig(**kw)
    kw.update(feat_extract_norm=norm, do_stable_layer_norm=norm == "layer")  # as the base / large models pair them
    return {"wav2vec2": Wav2Vec2Config, "hubert": HubertConfig, "wavlm": WavLMConfig}[kind](**kw)


def save_tiny(dest: Path, kind: str, norm: str, head: str = "") -> Path:
    """A tiny random model of `kind` (AutoModel, or AutoModelFor`head`) saved into `dest`."""
    import torch
    import transformers as tf

    torch.manual_seed(0)
    auto = getattr(tf, f"AutoModelFor{head}") if head else tf.AutoModel
    auto.from_config(tiny_config(kind, norm)).save_pretrained(str(dest))
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
