"""Figures of the paper, as PNG files (matplotlib, Agg backend: no display needed).

- `plot_radar`: (100 - error rate) per language and method (Fig. 5);
- `plot_relative_change`: grouped bars of the relative change against a baseline (Fig. 6);
- `plot_cosine_heatmap`: pairwise cosine similarity of language-ID embeddings (Fig. 7);
- `plot_tsne`: t-SNE of utterance-level encoder outputs coloured by language (Fig. 8).

t-SNE input file (`load_embeddings_npz`): a numpy .npz with
    embeddings: float array (N, d), one utterance-level vector per utterance (e.g. mean-pooled
                encoder outputs);
    langs:      str array (N,), the ISO 639-1 code of each utterance.
"""
from __future__ import annotations

import logging
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (after choosing the backend)
import numpy as np  # noqa: E402

logger = logging.getLogger(__name__)

EXACT_TSNE_MAX_POINTS = 200


def _colors(n: int) -> list:
    """n distinct colours: tab10 / tab20 while they last, then evenly spaced hues."""
    if n <= 10:
        return [plt.get_cmap("tab10")(i) for i in range(n)]
    if n <= 20:
        return [plt.get_cmap("tab20")(i) for i in range(n)]
    return [plt.get_cmap("hsv")(i / n) for i in range(n)]


def _save(fig, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=150, bbox_inches="tight")
    plt.close(fig)
    logger.info("wrote %s", path)
    return path


def plot_radar(scores: dict[str, dict[str, float]], path: str | Path, title: str = "") -> Path:
    """Radar chart of (100 - error rate) per axis, one polygon per method (paper Fig. 5).

    scores: {method label: {axis label: error rate in percent}}; every method must have every
    axis of the first one (at least 3 axes).
    """
    if not scores:
        raise ValueError("plot_radar: no methods to plot")
    axes_labels = list(next(iter(scores.values())))
    if len(axes_labels) < 3:
        raise ValueError(f"plot_radar: a radar needs at least 3 axes, got {axes_labels}")
    for method, row in scores.items():
        if set(row) != set(axes_labels):
            raise ValueError(f"plot_radar: {method!r} has axes {sorted(row)}, expected {sorted(axes_labels)}")
    acc = {m: [100.0 - row[a] for a in axes_labels] for m, row in scores.items()}
    # Zoom the radial axis onto the data, so differences of a few points stay visible.
    lo = min(min(v) for v in acc.values())
    hi = max(max(v) for v in acc.values())
    r_min = max(0.0, np.floor((lo - 0.1 * (hi - lo + 1e-9)) / 5) * 5)
    angles = np.linspace(0, 2 * np.pi, len(axes_labels), endpoint=False)
    fig, ax = plt.subplots(figsize=(6.5, 6.5), subplot_kw={"projection": "polar"})
    for (method, values), color in zip(acc.items(), _colors(len(acc))):
        closed = np.append(angles, angles[0])
        vals = values + values[:1]
        ax.plot(closed, vals, color=color, linewidth=1.6, label=method)
        ax.fill(closed, vals, color=color, alpha=0.08)
    ax.set_xticks(angles)
    ax.set_xticklabels(axes_labels)
    ax.tick_params(axis="x", pad=16)  # keep the axis names off the outer circle
    ax.set_rlabel_position(180.0 / len(axes_labels))  # radial ticks between the first two axes
    ax.set_ylim(r_min, min(100.0, hi + 0.05 * (hi - r_min) + 0.5))
    ax.set_title(title or "(1 - WER/CER) %", pad=20)
    ax.legend(loc="upper right", bbox_to_anchor=(1.35, 1.1), fontsize=8)
    return _save(fig, path)


def plot_relative_change(changes: dict[str, dict[str, float]], path: str | Path,
                         title: str = "", max_groups_per_row: int = 12) -> Path:
    """Grouped bars of relative change in percent, one group per axis label, one bar per method
    (paper Fig. 6; positive = fewer errors than the baseline). Missing values leave a gap.

    changes: {method label: {axis label: relative change in percent}}. More than
    `max_groups_per_row` groups wrap onto further rows (one shared y axis), so that a table of
    24 columns and 10 methods stays a readable page rather than a 70-inch strip.
    """
    if not changes:
        raise ValueError("plot_relative_change: no methods to plot")
    if max_groups_per_row < 1:
        raise ValueError(f"plot_relative_change: max_groups_per_row must be >= 1, got {max_groups_per_row}")
    labels = []
    for row in changes.values():
        labels += [a for a in row if a not in labels]
    n = len(changes)
    width = 0.8 / n
    n_rows = -(-len(labels) // max_groups_per_row)
    per_row = -(-len(labels) // n_rows)  # balanced rows
    fig_w = max(6.0, 0.12 * (n + 2) * per_row + 2.5)  # ~0.12 in per bar, room for the legend
    fig, axes = plt.subplots(n_rows, 1, figsize=(fig_w, 3.6 * n_rows), sharey=True, squeeze=False,
                             gridspec_kw={"hspace": 0.55})  # room for the tilted labels
    long_labels = max(len(a) for a in labels) > 6  # tilt them so neighbours do not overlap
    for r, ax in enumerate(axes[:, 0]):
        row_labels = labels[r * per_row:(r + 1) * per_row]
        x = np.arange(len(row_labels))
        for i, ((method, row), color) in enumerate(zip(changes.items(), _colors(n))):
            vals = [row.get(a, np.nan) for a in row_labels]
            ax.bar(x - 0.4 + width * (i + 0.5), vals, width, label=method, color=color)
        ax.axhline(0.0, color="black", linewidth=0.8)
        ax.set_xticks(x)
        ax.set_xticklabels(row_labels, rotation=30 if long_labels else 0,
                           ha="right" if long_labels else "center")
        ax.set_xlim(-0.6, per_row - 0.4)  # the same bar width on every row
        ax.set_ylabel("relative change (%)")
        ax.grid(axis="y", alpha=0.3)
    axes[0, 0].set_title(title or "Relative change vs baseline (positive = better)")
    axes[0, 0].legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    return _save(fig, path)


def plot_cosine_heatmap(emb: np.ndarray, labels: list[str], path: str | Path,
                        title: str = "") -> Path:
    """Heatmap of pairwise cosine similarities of the rows of emb (L, d), annotated (Fig. 7)."""
    emb = np.asarray(emb, dtype=np.float64)
    if emb.ndim != 2 or emb.shape[0] != len(labels):
        raise ValueError(f"plot_cosine_heatmap: emb must be (L, d) with L = {len(labels)} labels, "
                         f"got shape {emb.shape}")
    norms = np.linalg.norm(emb, axis=1)
    if np.any(norms == 0):
        zero = [labels[i] for i in np.flatnonzero(norms == 0)]
        raise ValueError(f"plot_cosine_heatmap: zero embedding for {zero}")
    unit = emb / norms[:, None]
    sim = unit @ unit.T  # (L, L)
    size = max(4.0, 0.55 * len(labels) + 1.5)
    fig, ax = plt.subplots(figsize=(size + 1.0, size))
    im = ax.imshow(sim, cmap="viridis", vmin=min(0.0, sim.min()), vmax=1.0)
    ax.set_xticks(range(len(labels)))
    ax.set_xticklabels(labels)
    ax.set_yticks(range(len(labels)))
    ax.set_yticklabels(labels)
    mid = (min(0.0, sim.min()) + 1.0) / 2
    for i in range(len(labels)):
        for j in range(len(labels)):
            ax.text(j, i, f"{sim[i, j]:.2f}", ha="center", va="center", fontsize=7,
                    color="black" if sim[i, j] > mid else "white")
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04, label="cosine similarity")
    ax.set_title(title or "Cosine similarity of language-ID embeddings")
    return _save(fig, path)


def tsne_2d(points: np.ndarray, seed: int = 0) -> np.ndarray:
    """t-SNE of points (N, d) to (N, 2); perplexity shrinks for small N (it must be < N)."""
    from sklearn.manifold import TSNE  # slow import, only needed here

    points = np.asarray(points, dtype=np.float64)
    if points.ndim != 2 or len(points) < 4:
        raise ValueError(f"t-SNE needs an (N, d) array with N >= 4, got shape {points.shape}")
    perplexity = min(30.0, (len(points) - 1) / 3)
    # Exact gradients for small sets: Barnes-Hut's OpenMP threads cost far more than they save there
    # (seconds instead of a fraction of one on a busy machine), and exact is O(N^2) only.
    method = "exact" if len(points) <= EXACT_TSNE_MAX_POINTS else "barnes_hut"
    tsne = TSNE(n_components=2, perplexity=perplexity, init="pca", random_state=seed, method=method)
    return tsne.fit_transform(points)


def plot_tsne(points: np.ndarray, langs: list[str], path: str | Path, title: str = "",
              seed: int = 0) -> Path:
    """t-SNE scatter of utterance-level vectors points (N, d), coloured by language langs (N,)."""
    langs = [str(lang) for lang in langs]
    if len(langs) != len(points):
        raise ValueError(f"plot_tsne: {len(points)} points but {len(langs)} language labels")
    xy = tsne_2d(points, seed)
    codes = sorted(set(langs))
    langs_arr = np.array(langs)
    fig, ax = plt.subplots(figsize=(6.5, 5.5))
    for code, color in zip(codes, _colors(len(codes))):
        sel = langs_arr == code
        ax.scatter(xy[sel, 0], xy[sel, 1], s=10, color=color, label=code, alpha=0.8)
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_title(title or "t-SNE of encoder outputs")
    ax.legend(markerscale=2, fontsize=8, loc="center left", bbox_to_anchor=(1.0, 0.5))
    return _save(fig, path)


def load_embeddings_npz(path: str | Path) -> tuple[np.ndarray, list[str]]:
    """Read a t-SNE input file: (embeddings (N, d), langs list of N codes). See the module doc."""
    try:
        data = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as err:
        raise ValueError(f"{path}: not a readable .npz of embeddings and langs ({err})") from None
    with data:
        missing = [k for k in ("embeddings", "langs") if k not in data]
        if missing:
            raise ValueError(f"{path}: missing key(s) {missing}; expected 'embeddings' (N, d) "
                             f"and 'langs' (N,), found {list(data.keys())}")
        emb, langs = data["embeddings"], [str(x) for x in data["langs"]]
    if emb.ndim != 2 or len(emb) != len(langs):
        raise ValueError(f"{path}: 'embeddings' must be (N, d) with N = len(langs) = {len(langs)}, "
                         f"got shape {emb.shape}")
    return emb, langs
