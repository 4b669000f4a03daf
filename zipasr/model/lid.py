"""Language-ID embeddings e(l), the router input of Zipper-Hard/Soft (paper Eq. (16), Fig. 7).

Sources:
- `whisper`: the row of a Whisper checkpoint's decoder token embedding (`decoder.embed_tokens`) for the
  language token `<|l|>`; token ids come from the checkpoint's own `generation_config.lang_to_id`,
  never from a hard-coded table.
- `acoustic`: the mean of the utterance-level mean-pooled encoder outputs of each language (for
  encoders without a Whisper decoder, like the mini recipe's).
- `file`: a safetensors file written by `save_lid_embeddings` (any source), rows reordered to the
  requested languages.

A saved file holds one tensor `lid_embeddings` (L, d) and, in its metadata, the language list and the
source, so the rows can never be matched to the wrong languages.
"""
from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Iterable, Sequence

import torch
from safetensors import safe_open
from safetensors.torch import save_file
from torch import Tensor
from tqdm import tqdm

from zipasr.adapters.inject import read_safetensors
from zipasr.languages import check_languages, get_language
from zipasr.model.encoder import WhisperSpeechEncoder, check_checkpoint_dir

logger = logging.getLogger(__name__)

LID_SOURCES = ("whisper", "acoustic", "file")
TENSOR_KEY = "lid_embeddings"
EMBED_SUFFIX = "decoder.embed_tokens.weight"


def whisper_language_token_ids(whisper_dir: str | Path, languages: Sequence[str]) -> list[int]:
    """Token ids of `<|l|>` for each language, from the checkpoint's generation_config.lang_to_id."""
    whisper_dir = check_checkpoint_dir(whisper_dir, "Whisper")
    gen_file = whisper_dir / "generation_config.json"
    if not gen_file.is_file():
        raise FileNotFoundError(
            f"{whisper_dir} has no generation_config.json; the language token ids (lang_to_id) come from it"
        )
    lang_to_id = json.loads(gen_file.read_text(encoding="utf-8")).get("lang_to_id")
    if not lang_to_id:
        raise KeyError(f"{gen_file} has no 'lang_to_id' (not a multilingual Whisper checkpoint?)")
    ids, missing = [], []
    for code in check_languages(languages):
        token = get_language(code).whisper_token
        if token in lang_to_id:
            ids.append(int(lang_to_id[token]))
        else:
            missing.append(f"{code} ({token})")
    if missing:
        raise KeyError(
            f"{gen_file}: lang_to_id has no token for {', '.join(missing)}; it has {', '.join(sorted(lang_to_id))}"
        )
    return ids


def _decoder_embedding_rows(whisper_dir: Path, ids: list[int]) -> Tensor:
    """Rows `ids` of the decoder token embedding, read from the safetensors files without loading the model."""
    files = sorted(whisper_dir.glob("*.safetensors"))
    for path in files:
        with safe_open(str(path), framework="pt") as f:
            keys = [k for k in f.keys() if k.endswith(EMBED_SUFFIX)]
            if keys:
                table = f.get_slice(keys[0])
                vocab = table.get_shape()[0]
                bad = [i for i in ids if not 0 <= i < vocab]
                if bad:
                    raise ValueError(f"{path}:{keys[0]} has {vocab} rows; language token ids {bad} are out of range")
                return torch.stack([table[i:i + 1][0] for i in ids]).float()
    if files:
        raise KeyError(f"no tensor ending in {EMBED_SUFFIX!r} in the safetensors files of {whisper_dir}")
    # Older checkpoints (pytorch_model.bin): load the model the slow way.
    from transformers import WhisperModel

    model = WhisperModel.from_pretrained(str(whisper_dir), local_files_only=True)
    return model.get_decoder().embed_tokens.weight.detach()[ids].float()


def whisper_lid_embeddings(whisper_dir: str | Path, languages: Sequence[str]) -> Tensor:
    """(L, d_model): decoder token embeddings of the language tokens of a Whisper checkpoint."""
    ids = whisper_language_token_ids(whisper_dir, languages)
    logger.info("LID embeddings: decoder token embedding rows %s of %s for %s", ids, whisper_dir, list(languages))
    return _decoder_embedding_rows(Path(whisper_dir), ids)


@torch.no_grad()
def acoustic_lid_embeddings(
    encoder: WhisperSpeechEncoder,
    items: Iterable[tuple[Tensor, str]],
    languages: Sequence[str],
    segment_frames: int | None = None,
    batch_size: int = 8,
    total: int | None = None,
) -> Tensor:
    """(L, d): per language, the mean over its utterances of the mean-pooled encoder outputs.

    items: (feats (n_mels, T), language code) pairs, e.g. from a data dir; every language needs at least one.
    """
    languages = check_languages(languages)
    index = {code: i for i, code in enumerate(languages)}
    device = next(encoder.parameters()).device
    sums = torch.zeros(len(languages), encoder.output_dim, dtype=torch.float64)
    counts = torch.zeros(len(languages), dtype=torch.long)
    encoder.eval()

    def flush(batch):
        lens = torch.tensor([f.shape[-1] for f, _ in batch])
        feats = torch.nn.utils.rnn.pad_sequence([f.T for f, _ in batch], batch_first=True).transpose(1, 2)
        pooled = encoder.utterance_embeddings(feats.to(device), lens.to(device), segment_frames).double().cpu()
        for (_, lang), vec in zip(batch, pooled):
            sums[index[lang]] += vec
            counts[index[lang]] += 1

    batch = []
    for feats, lang in tqdm(items, total=total, desc="acoustic LID embeddings", unit="utt"):
        if lang not in index:
            continue  # utterances of languages the model does not route are not needed
        batch.append((torch.as_tensor(feats, dtype=torch.float32), lang))
        if len(batch) == batch_size:
            flush(batch)
            batch = []
    if batch:
        flush(batch)
    empty = [code for code, n in zip(languages, counts.tolist()) if n == 0]
    if empty:
        raise ValueError(f"no utterances for languages {empty}; acoustic LID embeddings need at least one each")
    logger.info("acoustic LID embeddings from %s utterances per language %s", counts.tolist(), languages)
    return (sums / counts[:, None]).float()


def datadir_items(data_dir: str | Path, languages: Sequence[str],
                  max_per_language: int | None = None) -> tuple[list[tuple[str, str]], object]:
    """(utt, lang) pairs of a data dir (utt2lang), at most `max_per_language` each, and the loaded DataDir."""
    from zipasr.data.datadir import DataDir
    from zipasr.data.subset import first_per_language

    dd = DataDir.load(data_dir)
    if not dd.utt2lang:
        raise ValueError(f"{data_dir} has no utt2lang; acoustic LID embeddings need each utterance's language")
    pairs = [(utt, dd.utt2lang[utt]) for utt in dd.utt_ids]
    chosen = first_per_language([lang for _, lang in pairs], max_per_language, keep=set(languages))
    return [pairs[i] for i in chosen], dd


def save_lid_embeddings(embeddings: Tensor, languages: Sequence[str], path: str | Path, source: str) -> Path:
    """Write (L, d) embeddings with their language list and source in the safetensors metadata."""
    languages = check_languages(languages)
    if embeddings.dim() != 2 or embeddings.shape[0] != len(languages):
        raise ValueError(f"embeddings must be (L={len(languages)}, d), got {tuple(embeddings.shape)}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file({TENSOR_KEY: embeddings.detach().float().contiguous().cpu()}, str(path),
              metadata={"languages": json.dumps(languages), "source": source})
    return path


def load_lid_embeddings(path: str | Path, languages: Sequence[str] | None = None) -> tuple[Tensor, list[str]]:
    """(embeddings (L, d), languages) from a file; with `languages`, rows are selected in that order."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"LID embedding file not found: {path}")
    table, metadata = read_safetensors(path)
    if "languages" not in metadata:
        raise ValueError(f"{path} has no 'languages' metadata; write it with zipasr.model.lid.save_lid_embeddings")
    stored = json.loads(metadata["languages"])
    if TENSOR_KEY not in table:
        raise KeyError(f"{path} has no tensor {TENSOR_KEY!r}")
    emb = table[TENSOR_KEY]
    if languages is None:
        return emb, stored
    languages = check_languages(languages)
    missing = [code for code in languages if code not in stored]
    if missing:
        raise KeyError(f"{path} has no LID embedding for {missing}; it has {stored}")
    return emb[[stored.index(code) for code in languages]], languages


def lid_embeddings_for_model(source: str, languages: Sequence[str], whisper_dir: str | Path | None = None,
                             file: str | Path | None = None) -> Tensor:
    """The (L, d) table a model's routers use: `whisper` from `whisper_dir`; `acoustic`/`file` from `file`
    (acoustic embeddings need data, so they are computed beforehand by `python -m zipasr.bin.lid_embed`)."""
    if source not in LID_SOURCES:
        raise ValueError(f"unknown LID source {source!r}; known: {', '.join(LID_SOURCES)}")
    if source == "whisper" and file is None:
        if whisper_dir is None:
            raise ValueError("LID source 'whisper' needs a Whisper checkpoint directory")
        return whisper_lid_embeddings(whisper_dir, languages)
    if file is None:
        raise ValueError(
            f"LID source {source!r} needs a file (encoder_adapter.lid_file); compute it with "
            "`python -m zipasr.bin.lid_embed --source acoustic ...`"
        )
    return load_lid_embeddings(file, languages)[0]


def cosine_similarity_matrix(embeddings: Tensor) -> Tensor:
    """(L, d) -> (L, L) cosine similarities."""
    normed = torch.nn.functional.normalize(embeddings.float(), dim=-1)
    return normed @ normed.T
