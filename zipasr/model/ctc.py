"""A character CTC head on the speech encoder: its vocabulary, and N-best rescoring with it.

An encoder dir may hold a CTC head beside the Whisper checkpoint (the mini recipe's encoder is
pretrained with one, `zipasr.mini.pretrain_encoder`; a real Whisper has none):

    ENC/ctc_head.safetensors   nn.Linear(d_enc -> V) state, index 0 = blank
    ENC/ctc_vocab.json         the V - 1 characters, in index order from 1

Rescoring (ESPnet's joint CTC/attention scoring, applied to the N-best of the Speech-LLM's beam
search; icefall calls the converse "attention rescoring"): every hypothesis y of an utterance gets

    score(y) = (1 - w) * llm_score(y) + w * log p_ctc(y | x) / n(y) ** length_penalty

where llm_score is transformers' beam score (log-probability / n ** length_penalty), n the number of
generated tokens (EOS included) and log p_ctc the CTC log-likelihood of y's characters on the encoder
output (torch's ctc_loss). An utterance whose N-best holds a character the head does not know keeps
the LLM's best hypothesis (its CTC cannot score all of them alike).

A Speech-LLM may also train a head of its own (`ModelConfig.aux_ctc`, not the paper's): an auxiliary
CTC loss on the encoder output over the training transcripts' characters, warm-started from the
encoder dir's head (`CTCScorer.warm_start`); its checkpoint dir then holds the same two files.
"""
from __future__ import annotations

import json
import unicodedata
from pathlib import Path

import torch
from torch import Tensor, nn

CTC_HEAD_FILE = "ctc_head.safetensors"
CTC_VOCAB_FILE = "ctc_vocab.json"


def normalize_chars(text: str) -> str:
    """NFC, runs of white space as one space, no leading/trailing space."""
    return unicodedata.normalize("NFC", " ".join(text.split()))


class CharVocab:
    """Characters of the training transcripts; CTC index 0 is the blank, so char i has index i + 1."""

    def __init__(self, chars: list[str]):
        self.chars = chars
        self.index = {c: i + 1 for i, c in enumerate(chars)}

    @classmethod
    def from_texts(cls, texts) -> "CharVocab":
        return cls(sorted({c for t in texts for c in normalize_chars(t)}))

    def __len__(self) -> int:
        return len(self.chars) + 1

    def covers(self, text: str) -> bool:
        """Whether every character of `text` has a CTC index."""
        return all(c in self.index for c in normalize_chars(text))

    def encode(self, text: str) -> list[int]:
        """Known characters only (unknown ones are dropped: they cannot be targets)."""
        return [self.index[c] for c in normalize_chars(text) if c in self.index]

    def decode_greedy(self, ids: list[int]) -> str:
        """Collapse repeats, drop blanks."""
        out, prev = [], 0
        for i in ids:
            if i != prev and i != 0:
                out.append(self.chars[i - 1])
            prev = i
        return "".join(out)


class CTCScorer(nn.Module):
    """The encoder's CTC head: log p_ctc(text | encoder output) for N-best rescoring."""

    def __init__(self, head: nn.Linear, vocab: CharVocab):
        super().__init__()
        if head.out_features != len(vocab):
            raise ValueError(f"CTC head has {head.out_features} outputs, its vocabulary {len(vocab)} entries")
        self.head = head
        self.vocab = vocab

    @classmethod
    def from_dir(cls, ctc_dir: str | Path) -> "CTCScorer":
        from safetensors.torch import load_file

        ctc_dir = Path(ctc_dir)
        for name in (CTC_HEAD_FILE, CTC_VOCAB_FILE):
            if not (ctc_dir / name).is_file():
                raise FileNotFoundError(f"{ctc_dir / name} not found: CTC rescoring needs an encoder dir with a "
                                        "CTC head (e.g. the mini recipe's, from zipasr.mini.pretrain_encoder)")
        vocab = CharVocab(json.loads((ctc_dir / CTC_VOCAB_FILE).read_text(encoding="utf-8")))
        state = load_file(str(ctc_dir / CTC_HEAD_FILE))
        head = nn.Linear(state["weight"].shape[1], state["weight"].shape[0])
        head.load_state_dict(state)
        return cls(head, vocab).eval()

    @classmethod
    def warm_start(cls, vocab: CharVocab, d_enc: int, init: "CTCScorer | None" = None) -> "CTCScorer":
        """A head over `vocab`: the blank's and every shared character's row copied from `init`; the other
        rows get nn.Linear's initialisation (seeded by the caller's torch seed)."""
        head = nn.Linear(d_enc, len(vocab))
        if init is not None:
            if init.head.in_features != d_enc:
                raise ValueError(f"CTC head of width {init.head.in_features}, the encoder's is {d_enc}")
            pairs = [(0, 0)] + [(vocab.index[c], init.vocab.index[c]) for c in vocab.chars if c in init.vocab.index]
            new, old = (torch.tensor(x) for x in zip(*pairs))
            with torch.no_grad():
                head.weight[new] = init.head.weight[old].to(head.weight.dtype)
                head.bias[new] = init.head.bias[old].to(head.bias.dtype)
        return cls(head, vocab)

    def save(self, out_dir: str | Path) -> None:
        """Write `CTC_HEAD_FILE` and `CTC_VOCAB_FILE` into out_dir (what `from_dir` reads)."""
        from safetensors.torch import save_file

        out_dir = Path(out_dir)
        state = {k: v.detach().cpu().contiguous() for k, v in self.head.state_dict().items()}
        save_file(state, str(out_dir / CTC_HEAD_FILE))
        (out_dir / CTC_VOCAB_FILE).write_text(json.dumps(self.vocab.chars, ensure_ascii=False) + "\n",
                                              encoding="utf-8")

    def loss(self, hidden: Tensor, lens: Tensor, texts: list[str]) -> tuple[Tensor, int]:
        """hidden (N, T, d_enc), lens (N,), N transcripts -> (summed CTC loss, number of target characters).
        Unknown characters are dropped; an utterance with more characters than frames adds zero."""
        targets = [self.vocab.encode(t) for t in texts]
        log_probs = self.log_probs(hidden).transpose(0, 1)  # (T, N, V)
        flat = torch.tensor([i for t in targets for i in t], dtype=torch.long, device=hidden.device)
        target_lens = torch.tensor([len(t) for t in targets], dtype=torch.long, device=hidden.device)
        nll = nn.functional.ctc_loss(log_probs, flat, lens.to(hidden.device), target_lens, reduction="sum",
                                     zero_infinity=True)
        return nll, int(target_lens.sum())

    def log_probs(self, hidden: Tensor) -> Tensor:
        """hidden (N, T, d_enc) -> log-probs (N, T, V) float32."""
        return self.head(hidden.to(self.head.weight.dtype)).float().log_softmax(-1)

    def log_likelihood(self, log_probs: Tensor, length: int, texts: list[str]) -> Tensor:
        """log_probs (T, V) of one utterance (its first `length` frames are real), texts (K,) -> (K,)
        log p_ctc(text | x); characters without an index are dropped (check `vocab.covers` first)."""
        targets = [self.vocab.encode(t) for t in texts]
        k = len(texts)
        lp = log_probs[:length, None].expand(length, k, log_probs.shape[-1])
        flat = torch.tensor([i for t in targets for i in t], dtype=torch.long)
        nll = nn.functional.ctc_loss(lp, flat, torch.full((k,), length, dtype=torch.long),
                                     torch.tensor([len(t) for t in targets], dtype=torch.long),
                                     reduction="none", zero_infinity=False)
        return -nll


def rescore(llm_scores: Tensor, ctc_log_likelihoods: Tensor, n_tokens: Tensor, weight: float,
            length_penalty: float) -> int:
    """Index of the best of K hypotheses: llm_scores (K,) as transformers' beam scores, ctc (K,), n (K,)."""
    ctc = ctc_log_likelihoods / n_tokens.float() ** length_penalty
    return int(((1 - weight) * llm_scores + weight * ctc).argmax())
