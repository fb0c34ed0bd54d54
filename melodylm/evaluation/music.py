"""Music metrics: features of one piece, and MGEval-style comparison of two sets of pieces.

``piece_metrics`` describes one symusic Score with the features of MGEval
(Yang & Lerch 2018) and MusPy (Dong et al. 2020). ``compare_sets`` follows
MGEval: for each feature, the distances between pieces inside the reference set
(intra-set) and between each generated and each reference piece (inter-set) are
smoothed into densities (Gaussian KDE, one Scott bandwidth shared by the two),
and the two densities are compared by their overlapping area (OA, 1 = same
distribution, 0 = disjoint) and the KL divergence KL(intra || inter) in nats.
Plain numpy: no scipy.

Times are in beats (quarter notes: ticks / ``ticks_per_quarter``), pitches and
intervals in semitones. Drum tracks are left out; the notes of every other
track are merged into one list.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
from symusic import Score
from symusic.core import ScoreTick

# Every scalar key piece_metrics returns, with its unit (used by tables and JSON).
FEATURE_UNITS = {
    "note_count": "notes",
    "pitch_count": "pitches",
    "pitch_class_entropy": "bits",
    "scale_consistency": "share",
    "pitch_range": "semitones",
    "mean_abs_interval": "semitones",
    "mean_ioi": "beats",
    "empty_beat_rate": "share",
    "groove_consistency": "share",
    "polyphony": "notes",
}
NOTE_LENGTH_HIST = "note_length_hist"
# MGEval's 12 note-length classes in beats (quarter notes), as for a 4/4 bar: whole, half, quarter,
# 8th, 16th; dotted half, quarter, 8th, 16th; half-, quarter- and 8th-note triplets.
NOTE_LENGTH_CLASSES = np.array([4, 2, 1, 1 / 2, 1 / 4, 3, 3 / 2, 3 / 4, 3 / 8, 4 / 3, 2 / 3, 1 / 3])
GROOVE_STEPS_PER_BEAT = 24
_MAJOR = np.array([1, 0, 1, 0, 1, 1, 0, 1, 0, 1, 0, 1], bool)  # C major; C minor is a rotation of E-flat major
_MINOR = np.array([1, 0, 1, 1, 0, 1, 0, 1, 1, 0, 1, 0], bool)
SCALES = np.stack([np.roll(m, root) for m in (_MAJOR, _MINOR) for root in range(12)])  # (24, 12)


# --- one piece -----------------------------------------------------------------------


def _notes(score: Score) -> dict[str, np.ndarray]:
    """Onset, duration (ticks, int64) and pitch of every non-drum note, sorted by onset then pitch."""
    arrays = [t.notes.numpy() for t in score.tracks if not t.is_drum and t.note_num() > 0]
    if not arrays:
        return {k: np.zeros(0, np.int64) for k in ("time", "duration", "pitch")}
    cols = {k: np.concatenate([a[k] for a in arrays]).astype(np.int64) for k in ("time", "duration", "pitch")}
    order = np.lexsort((cols["pitch"], cols["time"]))
    return {k: v[order] for k, v in cols.items()}


def _entropy_bits(counts: np.ndarray) -> float:
    p = counts[counts > 0] / counts.sum()
    return float(-(p * np.log2(p)).sum()) + 0.0  # + 0.0 turns -0.0 into 0.0


def bars(score: Score, end: int) -> tuple[np.ndarray, np.ndarray]:
    """Start and length (ticks) of every bar beginning before ``end`` (ticks).

    Bars follow the time signatures, 4/4 where none is given; a bar cut short by
    the next time signature keeps only its played length.
    """
    tpq = score.ticks_per_quarter
    sigs = {0: (4, 4)}
    for ts in score.time_signatures:  # a later signature at the same tick wins; broken ones are ignored
        if 0 <= ts.time < end and ts.numerator > 0 and ts.denominator > 0:
            sigs[int(ts.time)] = (int(ts.numerator), int(ts.denominator))
    times = sorted(sigs)
    starts, lengths = [], []
    for i, t in enumerate(times):
        num, den = sigs[t]
        length = max(1, round(num * tpq * 4 / den))
        stop = times[i + 1] if i + 1 < len(times) else end
        seg = np.arange(t, stop, length)
        starts.append(seg)
        lengths.append(np.minimum(length, stop - seg) if i + 1 < len(times) else np.full(len(seg), length))
    return np.concatenate(starts).astype(np.int64), np.concatenate(lengths).astype(np.int64)


def groove_consistency(score: Score, onsets: np.ndarray, end: int) -> float:
    """MusPy's groove consistency: 1 - mean Hamming distance of neighbouring bars' onset patterns.

    ``onsets`` (ticks) are placed on a grid of 24 steps per beat in their bar;
    each distance is divided by the number of steps in the longer of the two
    bars. Bars come from :func:`bars` up to ``end`` (the last note-off, ticks).
    NaN for fewer than two bars.
    """
    tpq = score.ticks_per_quarter
    starts, lengths = bars(score, end)
    if len(starts) < 2:
        return float("nan")
    steps = np.maximum(1, np.round(lengths * GROOVE_STEPS_PER_BEAT / tpq).astype(np.int64))
    bar = np.searchsorted(starts, onsets, side="right") - 1
    pos = np.minimum(np.round((onsets - starts[bar]) * GROOVE_STEPS_PER_BEAT / tpq).astype(np.int64), steps[bar] - 1)
    patterns = np.zeros((len(starts), int(steps.max())), bool)
    patterns[bar, pos] = True
    hamming = np.count_nonzero(patterns[:-1] != patterns[1:], axis=1)
    return float(1 - np.mean(hamming / np.maximum(steps[:-1], steps[1:])))


def empty_beat_rate(time: np.ndarray, duration: np.ndarray, tpq: int) -> float:
    """Share of beats [k, k+1), k = 0 ... ceil(end) - 1, in which no note sounds (MusPy).

    ``time`` and ``duration`` (ticks, durations > 0) of the notes; ``end`` is
    the last note-off in beats.
    """
    n_beats = math.ceil((time + duration).max() / tpq)
    cover = np.zeros(n_beats + 1, np.int64)  # +1 at a note's first beat, -1 after its last
    np.add.at(cover, time // tpq, 1)
    np.add.at(cover, -(-(time + duration) // tpq), -1)  # ceil(note-off / tpq)
    return float(np.mean(np.cumsum(cover)[:n_beats] == 0))


def polyphony(time: np.ndarray, duration: np.ndarray) -> float:
    """Mean number of sounding notes over the time where at least one sounds (ticks, durations > 0)."""
    events = np.concatenate([time, time + duration])
    change = np.concatenate([np.ones(len(time)), -np.ones(len(time))])
    order = np.argsort(events, kind="stable")
    active = np.cumsum(change[order])[:-1]  # notes sounding from one event to the next
    span = np.diff(events[order])
    return float((active * span).sum() / span[active > 0].sum())


def note_length_hist(durations_beats: np.ndarray) -> list[float]:
    """MGEval's note-length histogram: share of notes nearest to each of the 12 NOTE_LENGTH_CLASSES (beats)."""
    hist = np.zeros(len(NOTE_LENGTH_CLASSES))
    if len(durations_beats):
        nearest = np.abs(durations_beats[:, None] - NOTE_LENGTH_CLASSES[None, :]).argmin(axis=1)
        hist = np.bincount(nearest, minlength=len(NOTE_LENGTH_CLASSES)) / len(durations_beats)
    return hist.tolist()


def piece_metrics(score: Score) -> dict[str, float | list[float]]:
    """Features of one piece (all non-drum tracks merged).

    Every key of FEATURE_UNITS maps to a float (NaN where a feature is undefined,
    e.g. intervals of a one-note piece); ``note_length_hist`` is the one
    non-float value, a list of 12 shares summing to 1 (all zeros without notes).

    - ``note_count``: notes; ``pitch_count``: distinct MIDI pitches.
    - ``pitch_class_entropy``: entropy in bits of the 12-bin pitch-class
      histogram of note counts (MusPy), 0 ... log2(12).
    - ``scale_consistency``: largest share of notes inside one of the 24 major
      and natural-minor scales (MusPy).
    - ``pitch_range``: highest minus lowest pitch, semitones.
    - ``mean_abs_interval``: mean |pitch difference| of consecutive notes in
      (onset, pitch) order, semitones (MGEval's average pitch interval).
    - ``mean_ioi``: mean interval between consecutive distinct onsets, beats.
    - ``empty_beat_rate``: see :func:`empty_beat_rate` (MusPy).
    - ``groove_consistency``: see :func:`groove_consistency` (MusPy).
    - ``polyphony``: mean number of sounding notes over the time where at least
      one sounds, time-weighted, i.e. at tick resolution (MusPy counts pitches).
    """
    if not isinstance(score, ScoreTick):
        score = score.to("tick")
    tpq = score.ticks_per_quarter
    notes = _notes(score)
    time, duration, pitch = notes["time"], notes["duration"], notes["pitch"]
    nan = float("nan")
    out: dict[str, float | list[float]] = {k: nan for k in FEATURE_UNITS}
    out["note_count"] = float(len(pitch))
    out["pitch_count"] = float(len(np.unique(pitch)))
    out[NOTE_LENGTH_HIST] = note_length_hist(duration / tpq)
    if len(pitch) == 0:
        return out
    pc_counts = np.bincount(pitch % 12, minlength=12)
    out["pitch_class_entropy"] = _entropy_bits(pc_counts)
    out["scale_consistency"] = float((SCALES @ pc_counts).max() / len(pitch))
    out["pitch_range"] = float(pitch.max() - pitch.min())
    if len(pitch) > 1:
        out["mean_abs_interval"] = float(np.abs(np.diff(pitch)).mean())
    onsets = np.unique(time)
    if len(onsets) > 1:
        out["mean_ioi"] = float(np.diff(onsets).mean() / tpq)
    sounding = duration > 0
    if sounding.any():
        out["empty_beat_rate"] = empty_beat_rate(time[sounding], duration[sounding], tpq)
        out["polyphony"] = polyphony(time[sounding], duration[sounding])
    end = int((time + duration).max())
    if end > 0:
        out["groove_consistency"] = groove_consistency(score, time, end)
    return out


# --- two sets ------------------------------------------------------------------------


def scott_bandwidth(samples: np.ndarray) -> float:
    """Scott's rule for 1-D data, as scipy's gaussian_kde: std (ddof=1) * n ** (-1/5); 0 if undefined."""
    samples = np.asarray(samples, float)
    if len(samples) < 2:
        return 0.0
    return float(np.std(samples, ddof=1) * len(samples) ** (-1 / 5))


def kde_on_grid(samples: np.ndarray, grid: np.ndarray, bandwidth: float) -> np.ndarray:
    """Gaussian kernel density of ``samples`` at the points of a uniform ``grid``; shape (len(grid),).

    Samples are linearly binned onto the grid and the bins convolved with the
    kernel, so the cost does not grow with len(samples) x len(grid). Accurate
    while the grid step is below about half the bandwidth.
    """
    if not bandwidth > 0:
        raise ValueError(f"bandwidth must be > 0, got {bandwidth}")
    samples = np.asarray(samples, float)
    step = grid[1] - grid[0]
    where = np.clip((samples - grid[0]) / step, 0, len(grid) - 1 - 1e-9)
    left = where.astype(np.int64)
    frac = where - left
    counts = np.bincount(left, 1 - frac, len(grid)) + np.bincount(left + 1, frac, len(grid) + 1)[: len(grid)]
    half = min((len(grid) - 1) // 2, int(math.ceil(6 * bandwidth / step)))  # kernel no longer than grid
    offsets = np.arange(-half, half + 1) * step
    kernel = np.exp(-0.5 * (offsets / bandwidth) ** 2) / (bandwidth * math.sqrt(2 * math.pi))
    return np.convolve(counts, kernel, mode="same") / len(samples)


def overlap_and_kl(intra: np.ndarray, inter: np.ndarray, grid_size: int = 2048) -> tuple[float, float]:
    """Overlapping area and KL(intra || inter) in nats of the KDEs of two 1-D samples.

    Both densities use one bandwidth: the larger of the two samples' Scott
    bandwidths, floored at 1% of the pooled range (0.01 when every value is
    equal, so zero-variance samples become narrow bumps). MGEval gives each set
    its own bandwidth, which makes the OA depend on the set sizes: with integer
    features such as pitch_range, the distance samples are spiky, and a set
    compared with 20 copies of itself scored OA ~0.8 instead of ~1. The
    densities are evaluated on one grid reaching 6 bandwidths past the data;
    the KL integrand floors them at 1e-12 times the peak, which keeps disjoint
    sets finite (about 27 nats at most).
    """
    intra, inter = np.asarray(intra, float), np.asarray(inter, float)
    if len(intra) == 0 or len(inter) == 0:
        return float("nan"), float("nan")
    pooled = np.concatenate([intra, inter])
    floor = 0.01 * (float(np.ptp(pooled)) or 1.0)
    bandwidth = max(scott_bandwidth(intra), scott_bandwidth(inter), floor)
    grid = np.linspace(pooled.min() - 6 * bandwidth, pooled.max() + 6 * bandwidth, grid_size)
    step = grid[1] - grid[0]
    p, q = kde_on_grid(intra, grid, bandwidth), kde_on_grid(inter, grid, bandwidth)
    oa = float(np.minimum(p, q).sum() * step)
    eps = 1e-12 * max(p.max(), q.max())
    pe, qe = np.maximum(p, eps), np.maximum(q, eps)
    pe, qe = pe / (pe.sum() * step), qe / (qe.sum() * step)
    kl = float((pe * np.log(pe / qe)).sum() * step)
    return min(oa, 1.0), max(kl, 0.0)


def _feature_matrix(pieces: list[dict], key: str) -> np.ndarray:
    """(pieces, dims) values of one feature; pieces where it is missing or NaN are left out."""
    rows = [np.atleast_1d(np.asarray(p[key], float)) for p in pieces if key in p]
    if not rows:
        return np.zeros((0, 1))
    x = np.stack(rows)
    return x[~np.isnan(x).any(axis=1)]


def intra_set_distances(x: np.ndarray) -> np.ndarray:
    """Euclidean distances of every unordered pair of rows of ``x`` (n, dims): n (n - 1) / 2 values."""
    parts = [np.linalg.norm(x[i + 1:] - x[i], axis=1) for i in range(len(x) - 1)]  # row by row: bounded memory
    return np.concatenate(parts) if parts else np.zeros(0)


def inter_set_distances(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Euclidean distances of every row of ``x`` (n, dims) to every row of ``y`` (m, dims): n m values."""
    parts = [np.linalg.norm(y - row, axis=1) for row in x]
    return np.concatenate(parts) if parts else np.zeros(0)


def _mean(x: np.ndarray, vector: bool) -> float | list[float]:
    if vector:
        return x.mean(axis=0).tolist() if len(x) else []
    return float(x[:, 0].mean()) if len(x) else float("nan")


def compare_sets(generated: list[dict], reference: list[dict]) -> dict[str, dict]:
    """MGEval comparison of two sets of :func:`piece_metrics` dicts, per feature.

    Returns {feature: {"generated_mean", "reference_mean", "oa", "kl",
    "generated_pieces", "reference_pieces"}}, one entry per key of
    FEATURE_UNITS plus ``note_length_hist`` (its means are 12-element lists,
    its distances Euclidean between histograms). ``oa`` is the overlapping
    area of the reference set's intra-set distance density and the inter-set
    distance density (higher is closer), ``kl`` their KL divergence in nats
    (lower is closer). Pieces where a feature is NaN are left out of that
    feature; OA and KL are NaN with fewer than two reference pieces or no
    generated piece.
    """
    out = {}
    for key in [*FEATURE_UNITS, NOTE_LENGTH_HIST]:
        gen, ref = _feature_matrix(generated, key), _feature_matrix(reference, key)
        vector = key not in FEATURE_UNITS
        oa, kl = float("nan"), float("nan")
        if len(ref) >= 2 and len(gen) >= 1:
            oa, kl = overlap_and_kl(intra_set_distances(ref), inter_set_distances(gen, ref))
        out[key] = {"generated_mean": _mean(gen, vector), "reference_mean": _mean(ref, vector), "oa": oa, "kl": kl,
                    "generated_pieces": len(gen), "reference_pieces": len(ref)}
    return out


# --- copying ----------------------------------------------------------------------------

COPY_RUN = 16  # a sample "copies" when this many consecutive melody pitches stand in a training piece


def melody_line(score: Score) -> np.ndarray:
    """The pitches of the highest note at each onset (all tracks), in time order: the melody a listener follows."""
    notes = _notes(score)  # sorted by onset, then pitch: the highest of an onset is its last
    time = notes["time"]
    last = np.ones(len(time), dtype=bool)
    last[:-1] = time[1:] != time[:-1]
    return notes["pitch"][last]


def interval_runs(pitches: np.ndarray, run: int = COPY_RUN) -> set[bytes]:
    """Every run of ``run`` consecutive pitches, as its ``run - 1`` intervals: the same run in any key."""
    steps = np.diff(np.asarray(pitches, dtype=np.int64)).astype(np.int8)
    return {steps[i : i + run - 1].tobytes() for i in range(len(steps) - run + 2)}


def copies(pitches: np.ndarray, training_runs: set[bytes], run: int = COPY_RUN) -> bool:
    """Whether some run of ``run`` consecutive pitches of ``pitches`` stands, in some key, in a training piece."""
    return not interval_runs(pitches, run).isdisjoint(training_runs)


# --- sample sidecars -----------------------------------------------------------------


def invalid_token_rate(midi_paths: list[Path]) -> tuple[float | None, int]:
    """Mean ``invalid_token_rate`` of the ``<stem>.json`` sidecars ``melodylm sample`` writes.

    A MIDI file cannot tell which sampled tokens were invalid, so this reads the
    sidecar beside each file. Returns (mean over the sidecars carrying the key,
    how many did); (None, 0) when none does.
    """
    rates = []
    for path in midi_paths:
        sidecar = Path(path).with_suffix(".json")
        try:
            value = json.loads(sidecar.read_text()).get("invalid_token_rate")
        except (OSError, ValueError, AttributeError):
            continue
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            rates.append(float(value))
    return (float(np.mean(rates)) if rates else None), len(rates)
