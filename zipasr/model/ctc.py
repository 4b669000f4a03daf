"""A character CTC head on the speech encoder: its vocabulary, and N-best rescoring with it.

An encoder dir may hold a CTC head beside the Whisper checkpoint (the mini recipe's encoder is
pretrained with one, `zipasr.mini.pretrain_encoder`; a real Whisper has none):

    ENC/ctc_head.safetensors   nn.Linear(d_enc -> V) state, index 0 = blank
    ENC/ctc_vocab.json         the V - 1 characters, in index order from 1 (a JSON list: NFC characters;
                               or {"form": "NFD", "chars": [...]}, see `CharVocab`)

Rescoring (ESPnet's joint CTC/attention scoring, applied to the N-best of the Speech-LLM's beam
search; icefall calls the converse "attention rescoring"): every hypothesis y of an utterance gets

    score(y) = (1 - w) * llm_score(y) + w * log p_ctc(y | x) / n(y) ** length_penalty

where llm_score is transformers' beam score (log-probability / n ** length_penalty), n the number of
generated tokens (EOS included) and log p_ctc the CTC log-likelihood of y's characters on the encoder
output (torch's ctc_loss). An utterance whose N-best holds a character the head does not know keeps
the LLM's best hypothesis (its CTC cannot score all of them alike).

Joint decoding (`CTCPrefixScorer`; Watanabe et al. 2017, ESPnet's CTCPrefixScore / CTCPrefixScoreTH):
the CTC prefix score steers the beam search itself instead of only reranking its N-best. At every
step the ceil(1.5 x beam) best next tokens of each hypothesis by the LLM (ESPnet's pre-beam) get

    (1 - w) * log p_llm(token | prefix) + w * (log p_ctc(prefix + token, ...) - log p_ctc(prefix, ...))

where log p_ctc(g, ...) is the CTC probability of all label sequences that start with g's characters
(EOS: of g exactly); every other token is pruned. A hypothesis' accumulated score is then
(1 - w) * log p_llm(y) + w * log p_ctc(y) over the whole search. A token whose characters the head does
not know (or a special token other than EOS) is pruned too.

A Speech-LLM may also train a head of its own (`ModelConfig.aux_ctc`, not the paper's): an auxiliary
CTC loss on the encoder output over the training transcripts' characters, warm-started from the
encoder dir's head (`CTCScorer.warm_start`); its checkpoint dir then holds the same two files.
"""
from __future__ import annotations

import functools
import json
import math
import re
import unicodedata
from pathlib import Path

import torch
from torch import Tensor, nn
from transformers import LogitsProcessor

CTC_HEAD_FILE = "ctc_head.safetensors"
CTC_VOCAB_FILE = "ctc_vocab.json"


UNICODE_FORMS = ("NFC", "NFD")


def normalize_chars(text: str, form: str = "NFC") -> str:
    """Unicode normal form `form`, runs of white space as one space, no leading/trailing space."""
    return unicodedata.normalize(form, " ".join(text.split()))


class CharVocab:
    """Characters of the training transcripts; CTC index 0 is the blank, so char i has index i + 1.

    `form` is the Unicode normal form texts are split into characters in: NFC (composed: "é", "ố", "한" are
    one character each) or NFD (decomposed: "e" + U+0301, "o" + U+0302 + U+0301, Hangul syllables into
    their jamo), where an accent, a tone mark or a jamo is a label of its own, shared by every letter or
    syllable it occurs in."""

    def __init__(self, chars: list[str], form: str = "NFC"):
        if form not in UNICODE_FORMS:
            raise ValueError(f"unknown Unicode form {form!r}; known: {', '.join(UNICODE_FORMS)}")
        self.chars = chars
        self.form = form
        self.index = {c: i + 1 for i, c in enumerate(chars)}

    @classmethod
    def from_texts(cls, texts, form: str = "NFC") -> "CharVocab":
        return cls(sorted({c for t in texts for c in normalize_chars(t, form)}), form)

    @classmethod
    def load(cls, path: str | Path) -> "CharVocab":
        """Read a `CTC_VOCAB_FILE`: a JSON list (NFC characters) or {"form": ..., "chars": [...]}."""
        data = json.loads(Path(path).read_text(encoding="utf-8"))
        return cls(data) if isinstance(data, list) else cls(data["chars"], data["form"])

    def save(self, path: str | Path) -> None:
        """Write what `load` reads (NFC as a plain list, the format of heads written before NFD existed)."""
        data = self.chars if self.form == "NFC" else {"form": self.form, "chars": self.chars}
        Path(path).write_text(json.dumps(data, ensure_ascii=False) + "\n", encoding="utf-8")

    def __eq__(self, other) -> bool:
        return isinstance(other, CharVocab) and (self.form, self.chars) == (other.form, other.chars)

    def __len__(self) -> int:
        return len(self.chars) + 1

    def normalize(self, text: str) -> str:
        """`text` as this vocabulary's characters (`normalize_chars` in its form)."""
        return normalize_chars(text, self.form)

    def covers(self, text: str) -> bool:
        """Whether every character of `text` has a CTC index."""
        return all(c in self.index for c in self.normalize(text))

    def encode(self, text: str) -> list[int]:
        """Known characters only (unknown ones are dropped: they cannot be targets)."""
        return [self.index[c] for c in self.normalize(text) if c in self.index]

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
        vocab = CharVocab.load(ctc_dir / CTC_VOCAB_FILE)
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
        self.vocab.save(out_dir / CTC_VOCAB_FILE)

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


NEG_INF = float("-inf")
_BYTE_PIECE = re.compile(r"<0x[0-9A-Fa-f]{2}>")  # sentencepiece's byte fallback


@functools.cache
def _composition_seconds() -> frozenset[str]:
    """Starters that canonical composition (NFC) may join to the character before them: the second
    character of every two-character canonical decomposition, and the Hangul vowel and final jamo."""
    seconds = {chr(c) for c in range(0x1161, 0x1176)} | {chr(c) for c in range(0x11A8, 0x11C3)}
    for cp in range(0x110000):
        parts = unicodedata.decomposition(chr(cp)).split()
        if len(parts) == 2 and not parts[0].startswith("<"):
            seconds.add(chr(int(parts[1], 16)))
    return frozenset(seconds)


def appends_unchanged(piece: str, form: str) -> bool:
    """Whether normalize_chars(text + piece, form) == normalize_chars(text, form) + normalize_chars(piece, form)
    for every text that does not end in white space: a piece without white space whose first character
    (decomposed) neither reorders with what is before it (a starter) nor, in NFC, composes with it (no
    composition joins it to a character before it)."""
    if not piece or any(c.isspace() for c in piece):
        return False
    first = unicodedata.normalize("NFD", piece)[0]
    return unicodedata.combining(first) == 0 and (form == "NFD" or first not in _composition_seconds())


class CTCPrefixScorer(LogitsProcessor):
    """Joint CTC/attention beam search as a transformers logits processor (module docstring).

    Built per decoding batch from the encoder output; `llm.generate(..., logits_processor=[it])` then
    calls it at every step with the generated ids (N x num_beams, L) (rows of an utterance contiguous)
    and the LLM's log-probabilities (N x num_beams, V_tok), after the other processors (e.g. the lexicon
    constraint). The forward variables of every scored prefix (ESPnet's r^n, r^b: (T, P), one column per
    prefix) are kept between steps, so each step extends them by the new characters only: O(T) per
    character and step, vectorised over hypotheses and candidates. A prefix is found again from its row's
    ids as (its parent's row, its last token): no step hashes or copies whole id sequences per candidate.
    """

    def __init__(self, scorer: CTCScorer, hidden: Tensor, lens: Tensor, num_beams: int, weight: float,
                 tokenizer, eos_id: int, pre_beam: int | None = None):
        """hidden (N, T, d_enc) encoder output, lens (N,) its lengths; weight w in (0, 1]."""
        from zipasr.model.lexicon import piece_texts

        if not 0 < weight <= 1:
            raise ValueError(f"CTC weight must be in (0, 1], got {weight}")
        with torch.no_grad():
            lp = scorer.log_probs(hidden)  # (N, T, V)
        # Frames past an utterance's end: blank with probability 1, nothing else, so the forward
        # variables at the last frame of the batch are those at the utterance's own last frame.
        pad = torch.arange(lp.shape[1], device=lp.device)[None] >= lens.to(lp.device)[:, None]
        lp = lp.masked_fill(pad[..., None], NEG_INF)
        lp[..., 0] = lp[..., 0].masked_fill(pad, 0.0)
        self.log_probs = lp.transpose(0, 1).contiguous()  # (T, N, V)
        self.vocab = scorer.vocab
        self.num_beams = num_beams
        self.weight = weight
        self.eos_id = eos_id
        self.pre_beam = pre_beam or math.ceil(1.5 * num_beams)
        special = set(tokenizer.all_special_ids)
        self.pieces = [None if i in special or _BYTE_PIECE.fullmatch(p) else p
                       for i, p in enumerate(piece_texts(tokenizer))]
        # The characters a piece appends to any prefix not ending in a space (`appends_unchanged`; the
        # common case), or None: the prefix's text + the piece is then normalised in full.
        self.appends = [None if p is None or not appends_unchanged(p, self.vocab.form) else self.vocab.normalize(p)
                        for p in self.pieces]
        self.states: dict[tuple[int, int], int] = {}  # (parent column, token) -> column of the prefix
        self.rows: dict[tuple[int, tuple[int, ...]], int] = {}  # (utterance, a row's ids) -> its column
        self.texts: list[str] = []  # per column: the prefix's text as generated ...
        self.chars: list[str] = []  # ... and its characters (CharVocab.normalize)
        self.last = self.score = None  # (P,): the index of the last character (0 = none yet), log p_ctc(chars, ...)
        self.r_n = self.r_b = None  # (T, P): log-prob of the prefix's alignments up to frame t ending in a non-blank / a blank

    def _start(self, n_rows: int) -> None:
        n = self.log_probs.shape[1]
        if n_rows != n * self.num_beams:
            raise ValueError(f"{n_rows} hypotheses for {n} utterances x {self.num_beams} beams")
        self.r_b = self.log_probs[:, :, 0].cumsum(0)  # the empty prefix: blanks only
        self.r_n = torch.full_like(self.r_b, NEG_INF)
        self.texts, self.chars = [""] * n, [""] * n
        self.last = torch.zeros(n, dtype=torch.long, device=self.r_b.device)
        self.score = torch.zeros(n, dtype=self.r_b.dtype, device=self.r_b.device)
        self.states, self.rows = {}, {}

    def _extend(self, r_n: Tensor, r_b: Tensor, last: Tensor, chars: Tensor, utts: Tensor, start: int = 0):
        """Prefixes g (forward variables r_n, r_b (T, P), last characters (P,), 0 = empty) extended by one
        character c (P,) each, on utterances utts (P,) -> r_n, r_b of g + c and log p_ctc(g + c, ...) (P,).
        start: a lower bound of the length of every g; g + c cannot end before frame `start` (each character
        takes a frame), so the frames before it stay -inf and the loop skips them (ESPnet does the same)."""
        x = self.log_probs[:, utts, chars]  # (T, P)
        blank = self.log_probs[:, utts, 0]
        # phi: g ends at frame t and c may start at t + 1 (after a blank if c repeats g's last character)
        phi = torch.logaddexp(r_b, torch.where((last == chars)[None], NEG_INF, r_n))
        # One buffer (T, 3, P) = (r_n, phi, r_b) of g + c per frame: each frame is then two in-place ops,
        # (r_n, r_b)[t] = logaddexp(r_n[t - 1], (phi, r_b)[t - 1]) + (x, blank)[t]
        buf = torch.full((x.shape[0], 3, x.shape[1]), NEG_INF, dtype=x.dtype, device=x.device)
        buf[:, 1] = phi
        buf[0, 0] = torch.where(last == 0, x[0], NEG_INF)  # an empty g: c may start at frame 0
        emit = torch.stack([x, blank], 1)  # (T, 2, P)
        for t in range(max(1, start), x.shape[0]):
            prev = buf[t - 1]
            out = buf[t, 0::2]
            torch.logaddexp(prev[0:1].expand(2, -1), prev[1:3], out=out)
            out.add_(emit[t])
        new_n, new_b = buf[:, 0], buf[:, 2]
        score = torch.logsumexp(torch.cat([new_n[:1], phi[:-1] + x[1:]]), dim=0)
        return new_n, new_b, score

    def __call__(self, input_ids: Tensor, scores: Tensor) -> Tensor:
        """input_ids (R, L) generated so far, scores (R, V_tok) log-probs -> joint scores (R, V_tok)."""
        step0 = input_ids.shape[1] == 0 or self.r_n is None
        if step0:
            self._start(input_ids.shape[0])
        k = min(self.pre_beam, scores.shape[1])
        top_scores, top_ids = scores.topk(k, dim=-1)
        n_finite = (top_scores > NEG_INF).sum(-1).tolist()  # sorted: the pre-beam ends at the first -inf
        top_ids = top_ids.tolist()
        out = torch.full_like(scores, NEG_INF)
        index = self.vocab.index
        space_ok = " " in index
        rows, toks, cols, news = [], [], [], []  # one entry per candidate
        rows_now: dict[tuple[int, tuple[int, ...]], int] = {}
        first: dict[tuple[int, int], int] = {}  # (parent column, token) -> its first candidate
        src: list[int] = []  # candidate -> the first candidate of its (parent column, token)
        for r, ids in enumerate(input_ids.tolist()):
            utt = r // self.num_beams
            if step0:
                col = None if ids else utt
            else:
                parent = self.rows.get((utt, tuple(ids[:-1])))
                col = None if parent is None else self.states.get((parent, ids[-1]))
            if col is None:  # a hypothesis no longer in the search (its score is -inf): LLM only
                out[r] = scores[r]
                continue
            rows_now[(utt, tuple(ids))] = col
            text, chars = self.texts[col], self.chars[col]
            gap = bool(text) and text[-1].isspace() and bool(chars)  # a word boundary not written yet
            for tok in top_ids[r][:n_finite[r]]:
                if tok == self.eos_id:
                    new = c_chars = None
                else:
                    piece = self.pieces[tok]
                    if piece is None:
                        continue
                    new = self.appends[tok]
                    if new is not None and (space_ok or not gap):
                        if gap:
                            new = " " + new
                        if any(c not in index for c in new):
                            continue
                    else:
                        c_chars = self.vocab.normalize(text + piece)
                        new = c_chars[len(chars):]
                        if not c_chars.startswith(chars) or any(c not in index for c in new):
                            continue
                j = len(rows)
                src.append(j if new is None else first.setdefault((col, tok), j))
                rows.append(r), toks.append(tok), cols.append(col), news.append(new)
        if not rows:
            return out
        dev = scores.device
        parents = torch.tensor(cols, device=dev)
        r_n, r_b = self.r_n[:, parents], self.r_b[:, parents]
        last, score = self.last[parents], self.score[parents]
        final = torch.logaddexp(r_n[-1], r_b[-1])  # log p_ctc(parent exactly)
        utts = torch.tensor(rows, device=dev) // self.num_beams
        parent_score = score.clone()
        # Candidates with the same (parent, token) (an utterance's identical beams at step 0) are extended
        # once: src[j] is the first of them, whose forward variables the others take after the loop.
        longest = max((len(new) for new in news if new), default=0)
        for pos in range(longest):  # one character at a time (most pieces are one character long)
            sel = [j for j, new in enumerate(news) if new is not None and len(new) > pos and src[j] == j]
            idx = torch.tensor(sel, device=dev)
            chars = torch.tensor([self.vocab.index[news[j][pos]] for j in sel], device=dev)
            start = min(len(self.chars[cols[j]]) + pos for j in sel)
            new_n, new_b, new_score = self._extend(r_n[:, idx], r_b[:, idx], last[idx], chars, utts[idx], start)
            r_n[:, idx], r_b[:, idx], score[idx], last[idx] = new_n, new_b, new_score, chars
        if any(j != i for i, j in enumerate(src)):
            src_idx = torch.tensor(src, device=dev)
            r_n, r_b, score, last = r_n[:, src_idx], r_b[:, src_idx], score[src_idx], last[src_idx]
        is_eos = torch.tensor([new is None for new in news], device=dev)
        # A parent CTC cannot have (score -inf) has -inf children, not nan ones.
        delta = torch.where(parent_score == NEG_INF, NEG_INF, torch.where(is_eos, final, score) - parent_score)
        row_t, tok_t = torch.tensor(rows, device=dev), torch.tensor(toks, device=dev)
        out[row_t, tok_t] = (1 - self.weight) * scores[row_t, tok_t] + self.weight * delta.to(scores.dtype)
        keep = [j for j, new in enumerate(news) if new is not None and src[j] == j]
        self.states = {(cols[j], toks[j]): col for col, j in enumerate(keep)}
        self.rows = rows_now
        self.texts = [self.texts[cols[j]] + self.pieces[toks[j]] for j in keep]
        self.chars = [self.chars[cols[j]] + news[j] for j in keep]
        keep_idx = torch.tensor(keep, dtype=torch.long, device=dev)
        self.r_n, self.r_b = r_n[:, keep_idx], r_b[:, keep_idx]
        self.last, self.score = last[keep_idx], score[keep_idx]
        return out
