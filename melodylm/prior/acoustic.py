"""The acoustic model: basic-pitch (Spotify, ICASSP 2022) on ONNX, from its own wheel.

Needs the optional ``transcribe`` extra (``make transcribe-extra``);
without it every entry point raises a :class:`UserError` saying how to
install it. basic-pitch's frames are not evenly spaced (its two-second windows
overlap and are shifted back), so the posteriorgram carries its frame times.
"""

from __future__ import annotations

import logging
import warnings
from pathlib import Path

import numpy as np

from melodylm.errors import UserError
from melodylm.prior.notes import Note
from melodylm.prior.posteriors import Posteriorgram

INSTALL_HINT = ("transcription needs the optional 'transcribe' extra: run `make transcribe-extra` "
                "(pip install -e '.[transcribe]' && pip install --no-deps basic-pitch==0.4.0)")
ONSET_THRESHOLD, FRAME_THRESHOLD, MIN_NOTE_FRAMES = 0.5, 0.3, 11  # basic-pitch's own defaults (11 frames = 128 ms)


def _import_basic_pitch():
    """basic-pitch's inference and note-creation modules, or a UserError naming the missing piece."""
    root = logging.getLogger()
    level, handlers = root.level, list(root.handlers)
    root.setLevel(logging.ERROR)  # basic-pitch warns at import about every backend it does not find
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # resampy 0.4.2 imports the deprecated pkg_resources
            import onnxruntime  # noqa: F401  (the backend we use; basic-pitch would silently pick none)
            from basic_pitch import ICASSP_2022_MODEL_PATH, inference, note_creation
    except ImportError as err:
        raise UserError(f"{INSTALL_HINT} ({err})") from err
    finally:
        root.setLevel(level)
        root.handlers[:] = handlers  # and configures the root logger, which would print our messages twice
    if not str(ICASSP_2022_MODEL_PATH).endswith(".onnx"):
        raise UserError(f"basic-pitch picked {ICASSP_2022_MODEL_PATH}, not its ONNX model; {INSTALL_HINT}")
    return ICASSP_2022_MODEL_PATH, inference, note_creation


def available() -> bool:
    """True when the transcribe extra is installed."""
    try:
        _import_basic_pitch()
    except UserError:
        return False
    return True


_MODEL = None


def basic_pitch_output(audio: str | Path) -> dict[str, np.ndarray]:
    """basic-pitch's raw output for an audio file: ``note``, ``onset`` ``(frames, 88)`` and ``contour``."""
    global _MODEL
    path, inference, _ = _import_basic_pitch()
    audio = Path(audio)
    if not audio.is_file():
        raise UserError(f"{audio} does not exist")
    if _MODEL is None:
        _MODEL = inference.Model(path)
    try:
        return inference.run_inference(audio, _MODEL)
    except Exception as err:  # librosa/soundfile errors for unreadable audio
        if isinstance(err, (MemoryError, KeyboardInterrupt)):
            raise
        raise UserError(f"cannot transcribe {audio}: {type(err).__name__}: {err}") from err


def posteriorgram(output: dict[str, np.ndarray]) -> Posteriorgram:
    """basic-pitch's output -> a :class:`Posteriorgram` with its frame times."""
    _, _, note_creation = _import_basic_pitch()
    from basic_pitch.constants import AUDIO_SAMPLE_RATE, FFT_HOP

    frames = output["note"].shape[0]
    return Posteriorgram(output["note"], output["onset"], AUDIO_SAMPLE_RATE / FFT_HOP,
                         times=note_creation.model_frames_to_time(frames))


def basic_pitch_notes(output: dict[str, np.ndarray]) -> list[Note]:
    """basic-pitch's own polyphonic notes (its default thresholds), sorted by onset then pitch."""
    _, _, note_creation = _import_basic_pitch()
    _, events = note_creation.model_output_to_notes(
        output, onset_thresh=ONSET_THRESHOLD, frame_thresh=FRAME_THRESHOLD, min_note_len=MIN_NOTE_FRAMES,
        include_pitch_bends=False, melodia_trick=True)
    return sorted((Note(float(s), float(e), int(p)) for s, e, p, *_ in events), key=lambda n: (n.onset, n.pitch))


def keep_highest(notes: list[Note], merge: float = 0.05) -> list[Note]:
    """A melody from polyphonic notes: the highest pitch among notes starting within ``merge`` s of each other.

    Each kept note ends at the latest at the next kept onset (one line, as the
    LM's training melodies).
    """
    groups: list[list[Note]] = []
    for n in sorted(notes, key=lambda n: n.onset):
        if groups and n.onset - groups[-1][0].onset < merge:
            groups[-1].append(n)
        else:
            groups.append([n])
    line = [max(g, key=lambda n: n.pitch) for g in groups]
    return monophonic(line)


def monophonic(notes: list[Note]) -> list[Note]:
    """Cut each note at the next one's onset (notes sorted by onset)."""
    out = []
    for i, n in enumerate(notes):
        end = min(n.offset, notes[i + 1].onset) if i + 1 < len(notes) else n.offset
        out.append(Note(n.onset, max(end, n.onset + 1e-3), n.pitch))
    return out
