"""Audio a person can play: a symusic Score -> 16-bit PCM WAV file.

With the ``fluidsynth`` program and a General MIDI soundfont installed
(Debian/Ubuntu: ``apt-get install fluidsynth fluid-soundfont-gm``) the notes
are played by real instrument samples (stereo). Without them, pretty_midi's
sine synthesis renders the notes (mono) so that a WAV is always written.
Set ``MELODYLM_SOUNDFONT`` to use another ``.sf2`` file.
"""

from __future__ import annotations

import io
import logging
import os
import shutil
import subprocess
import tempfile
import wave
from pathlib import Path

import numpy as np
import pretty_midi
from symusic import Score

log = logging.getLogger(__name__)

SOUNDFONTS = (
    "/usr/share/sounds/sf2/FluidR3_GM.sf2",  # Debian/Ubuntu fluid-soundfont-gm
    "/usr/share/sounds/sf2/default-GM.sf2",
    "/usr/share/soundfonts/FluidR3_GM.sf2",  # Fedora, Arch
    "/usr/share/soundfonts/default.sf2",
)
FLUIDSYNTH_TIMEOUT = 120.0  # seconds for one file
TAIL = 0.5  # seconds kept after the last note ends (sine) or after the sound dies away (fluidsynth)
PEAK = 0.89  # every rendering is scaled to this peak (about -1 dBFS): loud enough, never clipped
SILENCE = 1e-3  # fluidsynth renders seconds of near-silence after the last note; trimmed below this level


def find_soundfont() -> Path | None:
    """``$MELODYLM_SOUNDFONT`` if set, else the first General MIDI soundfont found in the usual places."""
    env = os.environ.get("MELODYLM_SOUNDFONT")
    candidates = [env] if env else SOUNDFONTS
    for c in candidates:
        if Path(c).is_file():
            return Path(c)
    return None


def synthesizer() -> str:
    """Which synthesizer :func:`render_wav` uses here: ``"fluidsynth"`` or ``"sine"``."""
    return "fluidsynth" if shutil.which("fluidsynth") and find_soundfont() else "sine"


def render_wav(score: Score, path: Path, sample_rate: int = 22050, synth: str = "auto") -> Path:
    """Write ``score`` as a 16-bit PCM WAV at ``sample_rate`` Hz; returns ``path``.

    ``synth``: ``"auto"`` (:func:`synthesizer`), ``"fluidsynth"`` or ``"sine"``.
    If fluidsynth fails on a file, the sine rendering is written instead (with a
    warning). A score without notes gives half a second of silence.
    """
    if synth not in ("auto", "fluidsynth", "sine"):
        raise ValueError(f"synth must be 'auto', 'fluidsynth' or 'sine', not {synth!r}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if synth == "auto":
        synth = synthesizer()
    if synth == "fluidsynth" and score.note_num() > 0:
        try:
            return _render_fluidsynth(score, path, sample_rate)
        except (OSError, subprocess.SubprocessError, RuntimeError) as err:
            log.warning("fluidsynth could not render %s (%s); writing a sine rendering instead", path.name, err)
    return _render_sine(score, path, sample_rate)


def _render_fluidsynth(score: Score, path: Path, sample_rate: int) -> Path:
    soundfont = find_soundfont()
    program = shutil.which("fluidsynth")
    if soundfont is None or program is None:
        raise RuntimeError("fluidsynth or a General MIDI soundfont is not installed")
    with tempfile.TemporaryDirectory(prefix="melodylm-audio-") as tmp:
        midi = Path(tmp) / "in.mid"
        score.dump_midi(str(midi))
        out = Path(tmp) / "out.wav"
        # -n no MIDI input, -i no shell, -q quiet, -g gain, -F render to file as fast as possible
        cmd = [program, "-n", "-i", "-q", "-g", "0.8", "-T", "wav", "-O", "s16", "-r", str(sample_rate),
               "-F", str(out), str(soundfont), str(midi)]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=FLUIDSYNTH_TIMEOUT)
        if proc.returncode != 0 or not out.is_file() or out.stat().st_size <= 44:
            raise RuntimeError(f"exit {proc.returncode}: {(proc.stderr or proc.stdout).strip()[-300:]}")
        audio, rate = read_pcm16(out)
    loud = np.flatnonzero(np.abs(audio).max(axis=1) >= SILENCE)
    end = min(len(audio), int(loud[-1]) + 1 + int(rate * TAIL)) if loud.size else 0
    return write_pcm16(path, normalize(audio[:end]), rate)


def _render_sine(score: Score, path: Path, sample_rate: int) -> Path:
    if score.note_num() == 0:  # pretty_midi cannot read a MIDI file without events
        return write_pcm16(path, np.zeros(int(sample_rate * TAIL)), sample_rate)
    pm = pretty_midi.PrettyMIDI(io.BytesIO(score.dumps_midi()))
    audio = pm.synthesize(fs=sample_rate, normalize=False)
    keep = int(sample_rate * (pm.get_end_time() + TAIL))  # pretty_midi pads 1 s of silence
    return write_pcm16(path, normalize(audio[:keep]), sample_rate)


def normalize(audio: np.ndarray) -> np.ndarray:
    """Scale to a peak of :data:`PEAK`; silence stays silence."""
    peak = float(np.abs(audio).max()) if audio.size else 0.0
    return audio * (PEAK / peak) if peak > 0 else audio


def read_pcm16(path: Path) -> tuple[np.ndarray, int]:
    """A 16-bit PCM WAV -> samples in [-1, 1] of shape ``(time, channels)`` and the sample rate (Hz)."""
    with wave.open(str(path), "rb") as f:
        if f.getsampwidth() != 2:
            raise RuntimeError(f"{path.name}: {8 * f.getsampwidth()}-bit samples, expected 16-bit PCM")
        channels, rate = f.getnchannels(), f.getframerate()
        pcm = np.frombuffer(f.readframes(f.getnframes()), dtype="<i2")
    return pcm.reshape(-1, channels) / 32768.0, rate


def write_pcm16(path: Path, audio: np.ndarray, sample_rate: int) -> Path:
    """Samples in [-1, 1], shape ``(time,)`` or ``(time, channels)`` -> 16-bit PCM WAV."""
    audio = np.asarray(audio, dtype=np.float64)
    if audio.ndim == 1:
        audio = audio[:, None]
    pcm = np.round(np.clip(audio, -1.0, 1.0) * 32767).astype("<i2")
    with wave.open(str(path), "wb") as f:
        f.setnchannels(pcm.shape[1])
        f.setsampwidth(2)
        f.setframerate(sample_rate)
        f.writeframes(pcm.tobytes())
    return path
