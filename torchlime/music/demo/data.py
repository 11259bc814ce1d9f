"""Synthetic songs with a planted cause, for the demo classifier (no download needed).

Every song has four stems ``("vocals", "drums", "bass", "other")`` synthesised with torch
from a seeded ``torch.Generator``, and 12 lines of lyrics drawn from a shared pool.

The planted cause (what makes a song class 1, "positive") is a conjunction of five
features, three audio and two lyric, each of them necessary:

- **drum cue**: a dense 16th-note hi-hat pattern with extra off-beat snares, in the
  ``drums`` stem only, in ALL of segments 2, 3 and 4 of 10 equal temporal segments
  (:data:`CAUSE_SEGMENTS`; features ``drums_T2``, ``drums_T3``, ``drums_T4``). Segments
  without it hold the same sparse background hi-hats as the rest of the song.
- **lyric cue**: two lines at random positions, one containing ``"thunder"`` and one
  containing ``"lightning"`` (:data:`TRIGGER_WORDS`). Trigger lines are the ordinary line
  templates with the noun replaced by the trigger word, so the word is the only
  difference from the shared pool; pool lines never contain a trigger word.

``label = 1`` iff the drums are dense in all three cause segments AND both trigger lines
are present. Class 1 songs carry the complete cause. Class 0 songs carry any incomplete
part of it (drawn from :data:`NEGATIVE_KINDS`): nothing; the complete drum cue with no or
one trigger line; both trigger lines with no or a partial drum cue (dense in a non-empty
proper subset of the cause segments); and the other partial mixes. So a model that reads
only one modality, or only some of the cause segments, cannot be right: both modalities
and each of the five features matter, and a part of the cause (what LIME's masks leave
of it) is in the training distribution, labelled 0. Decoys make the drum cue
a matter of *where*: with probability 0.4, in either class, the same dense pattern also
plays in a block of 1-3 consecutive segments outside the cause segments
(:data:`DECOY_BLOCKS`), which never counts. Everything else (tempo, key, chords, melody,
vowels, levels, the other lyric lines, decoys) is drawn from the same distributions for
both classes.

Shape glossary: S stems, C channels, T audio samples.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
from torch import Tensor

__all__ = [
    "STEM_NAMES",
    "NUM_SEGMENTS",
    "CAUSE_SEGMENTS",
    "DECOY_BLOCKS",
    "TRIGGER_WORDS",
    "NEGATIVE_KINDS",
    "NUM_LINES",
    "DemoSong",
    "make_song",
    "make_dataset",
    "lyric_pool",
    "trigger_pool",
    "segment_edges",
]

STEM_NAMES: tuple[str, ...] = ("vocals", "drums", "bass", "other")
NUM_SEGMENTS = 10
CAUSE_SEGMENTS: tuple[int, ...] = (2, 3, 4)
# Decoy blocks: 1-3 consecutive segments outside the cause segments (within 0..1 or 5..9).
DECOY_BLOCKS: tuple[tuple[int, ...], ...] = tuple(
    tuple(range(a, a + n))
    for n in (1, 2, 3)
    for a in range(NUM_SEGMENTS - n + 1)
    if not set(range(a, a + n)) & set(CAUSE_SEGMENTS) and (a + n <= CAUSE_SEGMENTS[0] or a > CAUSE_SEGMENTS[-1])
)
TRIGGER_WORDS: tuple[str, ...] = ("thunder", "lightning")
NUM_LINES = 12

# Class 0 songs: (drum cue, lyric cue) kinds and their probabilities. A drum cue is
# "none", "partial" (a non-empty proper subset of CAUSE_SEGMENTS) or "full"; a lyric cue
# is "none", "one" (one of the two trigger lines) or "both". The near misses, one part
# short of the complete cause, are the most frequent.
NEGATIVE_KINDS: dict[tuple[str, str], float] = {
    ("none", "none"): 0.15,
    ("full", "none"): 0.10,
    ("full", "one"): 0.20,
    ("none", "both"): 0.10,
    ("partial", "both"): 0.20,
    ("partial", "one"): 0.10,
    ("partial", "none"): 0.075,
    ("none", "one"): 0.075,
}
_DECOY_PROB = 0.4

# ---------------------------------------------------------------------------------------
# Lyrics
# ---------------------------------------------------------------------------------------

_ADJECTIVES = (
    "golden", "broken", "silent", "electric", "midnight", "wild", "lonely", "burning",
    "endless", "velvet", "crimson", "hollow", "restless", "silver", "fading", "frozen",
    "gentle", "neon", "bitter", "sweet",
)  # fmt: skip
_NOUNS = (
    "heart", "river", "city", "night", "fire", "dream", "road", "sky", "ocean", "shadow",
    "light", "rain", "summer", "window", "highway", "garden", "mirror", "morning", "star",
    "echo", "storm", "wind",
)  # fmt: skip
_VERBS = (
    "falling", "running", "calling", "dancing", "waiting", "shining", "drifting", "singing",
    "breaking", "rising", "turning", "burning", "fading", "shaking",
)  # fmt: skip
# Every template has exactly one {noun} slot: a trigger line fills it with a trigger word.
_TEMPLATES = (
    "{adj} {noun} {verb}",
    "i keep {verb} through the {noun}",
    "we were {adj} like the {noun}",
    "take me to the {adj} {noun}",
    "under the {noun} we are {verb}",
    "your {noun} is {adj} tonight",
    "never let the {adj} {noun} go",
    "hold on to the {noun} {verb} slow",
    "all my {adj} days in the {noun}",
    "oh the {noun} keeps {verb}",
)


def _fill(nouns: tuple[str, ...]) -> list[str]:
    lines = []
    for template in _TEMPLATES:
        for adj, noun, verb in itertools.product(_ADJECTIVES, nouns, _VERBS):
            lines.append(template.format(adj=adj, noun=noun, verb=verb))
    return sorted(set(lines))


def _subsample(lines: list[str], k: int, seed: int) -> list[str]:
    g = torch.Generator().manual_seed(seed)
    idx = torch.randperm(len(lines), generator=g)[:k].sort().values
    return [lines[i] for i in idx.tolist()]


_LYRIC_POOL: list[str] | None = None
_TRIGGER_POOLS: dict[str, list[str]] = {}


def lyric_pool() -> list[str]:
    """The shared pool of 400 lyric-like lines (never containing a trigger word)."""
    global _LYRIC_POOL
    if _LYRIC_POOL is None:
        _LYRIC_POOL = _subsample(_fill(_NOUNS), 400, seed=1)
    return list(_LYRIC_POOL)


def trigger_pool(word: str | None = None) -> list[str]:
    """Trigger lines: 40 per trigger word, the pool templates with the noun replaced by it.

    Args:
        word: one of :data:`TRIGGER_WORDS` (default: the lines of all of them).
    """
    if word is None:
        return [line for w in TRIGGER_WORDS for line in trigger_pool(w)]
    if word not in TRIGGER_WORDS:
        raise ValueError(f"expected a trigger word among {TRIGGER_WORDS}, got {word!r}")
    if word not in _TRIGGER_POOLS:
        _TRIGGER_POOLS[word] = _subsample(_fill((word,)), 40, seed=2 + TRIGGER_WORDS.index(word))
    return list(_TRIGGER_POOLS[word])


def _make_lyrics(words: list[str], g: torch.Generator) -> tuple[list[str], list[int]]:
    pool = lyric_pool()
    lines = [pool[i] for i in torch.randperm(len(pool), generator=g)[: NUM_LINES - len(words)].tolist()]
    trig = []
    for w in words:
        options = trigger_pool(w)
        trig.append(options[int(torch.randint(len(options), (), generator=g))])
    order = torch.randperm(len(trig), generator=g).tolist()
    cause_lines = sorted(torch.randperm(NUM_LINES, generator=g)[: len(trig)].tolist())
    for pos, k in zip(cause_lines, order):
        lines.insert(pos, trig[k])
    return lines, cause_lines


# ---------------------------------------------------------------------------------------
# Audio
# ---------------------------------------------------------------------------------------


def segment_edges(num_samples: int, num_segments: int = NUM_SEGMENTS) -> list[int]:
    """Sample edges of ``num_segments`` even segments (as ``StemFactorization`` cuts them)."""
    return [round(g * num_samples / num_segments) for g in range(num_segments + 1)]


def _uniform(g: torch.Generator, lo: float, hi: float) -> float:
    return lo + (hi - lo) * float(torch.rand((), generator=g))


def _midi_hz(m: Tensor | float) -> Tensor:
    return 440.0 * 2.0 ** ((torch.as_tensor(m, dtype=torch.float32) - 69.0) / 12.0)


def _place(T: int, sr: int, times: list[float], amps: list[float], kernel: Tensor) -> Tensor:
    """A signal ``(T,)`` holding ``amp * kernel`` from each onset time on (overlaps add)."""
    out = torch.zeros(T)
    L = kernel.shape[0]
    for t, a in zip(times, amps):
        i = int(round(t * sr))
        if 0 <= i < T:
            n = min(L, T - i)
            out[i : i + n] += a * kernel[:n]
    return out


def _band_noise(T: int, sr: int, lo: float, hi: float, g: torch.Generator) -> Tensor:
    """Gaussian noise band-limited to ``[lo, hi]`` Hz (drawn in the frequency domain), unit RMS."""
    freqs = torch.fft.rfftfreq(T, 1.0 / sr)
    band = (freqs >= lo) & (freqs <= hi)
    spec = torch.complex(torch.randn(freqs.shape[0], generator=g), torch.randn(freqs.shape[0], generator=g))
    noise = torch.fft.irfft(spec * band, T)
    return noise / noise.square().mean().sqrt().clamp_min(1e-8)


def _decay(sr: int, tau: float, length: float) -> Tensor:
    t = torch.arange(int(length * sr)) / sr
    return torch.exp(-t / tau)


def _grid(start: float, end: float, step: float, offset: float) -> list[float]:
    k0 = math.ceil((start - offset) / step - 1e-9)
    out = []
    t = offset + k0 * step
    while t < end - 1e-9:
        out.append(t)
        k0 += 1
        t = offset + k0 * step
    return out


def _drums(T: int, sr: int, beat: float, offset: float, dense: list[tuple[float, float]], g: torch.Generator) -> Tensor:
    """Kick (decaying pitched sine), snare and hi-hat (band noise bursts) on a beat grid.

    ``dense`` lists ``(start, end)`` time ranges (s) that get the dense 16th-note hi-hat
    pattern with off-beat snares; elsewhere the hats are sparse 8ths.
    """
    dur = T / sr
    kick_gain, snare_gain, hat_gain = _uniform(g, 0.5, 0.8), _uniform(g, 0.25, 0.4), _uniform(g, 0.12, 0.2)
    hat_p = _uniform(g, 0.15, 0.4)

    def in_dense(t: float) -> bool:
        return any(a <= t < b for a, b in dense)

    beats = _grid(0.0, dur, beat, offset)
    kick_t = [t for i, t in enumerate(beats) if i % 4 in (0, 2) or float(torch.rand((), generator=g)) < 0.25]
    snare_t = [t for i, t in enumerate(beats) if i % 4 in (1, 3)]
    eighths = _grid(0.0, dur, beat / 2, offset)
    snare_t += [t for i, t in enumerate(eighths) if i % 2 == 1 and in_dense(t)]
    hat_t, hat_a = [], []
    for t in eighths:  # sparse background hats, drawn for every 8th so both classes share them
        hit, amp = float(torch.rand((), generator=g)) < hat_p, _uniform(g, 0.6, 1.0)
        if hit and not in_dense(t):
            hat_t.append(t)
            hat_a.append(amp)
    for i, t in enumerate(_grid(0.0, dur, beat / 4, offset)):
        if in_dense(t):
            hat_t.append(t)
            hat_a.append(1.0 if i % 2 == 0 else 0.7)

    kt = torch.arange(int(0.15 * sr)) / sr
    kick_phase = 2 * math.pi * (45.0 * kt + (110.0 - 45.0) * 0.03 * (1 - torch.exp(-kt / 0.03)))
    kick = _place(T, sr, kick_t, [1.0] * len(kick_t), torch.sin(kick_phase) * torch.exp(-kt / 0.05))
    snare_env = _place(T, sr, snare_t, [1.0] * len(snare_t), _decay(sr, 0.045, 0.25))
    st = torch.arange(int(0.1 * sr)) / sr
    snare_kernel = torch.sin(2 * math.pi * 190.0 * st) * torch.exp(-st / 0.025)
    snare_tone = _place(T, sr, snare_t, [1.0] * len(snare_t), snare_kernel)
    snare = 0.7 * _band_noise(T, sr, 1000.0, 3000.0, g) * snare_env + 0.5 * snare_tone
    hat_env = _place(T, sr, hat_t, hat_a, _decay(sr, 0.018, 0.12))
    hat = _band_noise(T, sr, 2800.0, 3950.0, g) * hat_env
    return kick_gain * kick + snare_gain * snare + hat_gain * hat


def _chord_tones(root: int, minor: bool, degree: int) -> tuple[int, int, int]:
    scale = (0, 2, 3, 5, 7, 8, 10) if minor else (0, 2, 4, 5, 7, 9, 11)
    notes = [root + scale[(degree + k) % 7] + 12 * ((degree + k) // 7) for k in (0, 2, 4)]
    return notes[0], notes[1], notes[2]


def _piecewise(T: int, sr: int, starts: list[float], values: list[float]) -> Tensor:
    """A per-sample signal holding ``values[i]`` from ``starts[i]`` on."""
    out = torch.empty(T)
    idx = [min(max(int(round(s * sr)), 0), T) for s in starts] + [T]
    out[: idx[0]] = values[0]
    for i, v in enumerate(values):
        out[idx[i] : idx[i + 1]] = v
    return out


def _note_envelope(T: int, sr: int, starts: list[float], ends: list[float], attack: float, release: float) -> Tensor:
    env = torch.zeros(T)
    for a, b in zip(starts, ends):
        i0, i1 = max(int(math.floor(a * sr)), 0), min(int(math.ceil(b * sr)) + 1, T)
        if i1 <= i0:
            continue
        t = torch.arange(i0, i1) / sr
        rise_fall = ((t - a) / attack).clamp(0, 1) * ((b - t) / release).clamp(0, 1)
        env[i0:i1] = torch.maximum(env[i0:i1], rise_fall)
    return env


def _rms_normalise(x: Tensor, rms: float) -> Tensor:
    return x * (rms / x.square().mean().sqrt().clamp_min(1e-8))


_VOWELS = ((800.0, 1200.0), (400.0, 2000.0), (300.0, 2300.0), (500.0, 900.0), (350.0, 800.0))


def _tonal_stems(T: int, sr: int, beat: float, offset: float, g: torch.Generator) -> tuple[Tensor, Tensor, Tensor]:
    dur = T / sr
    t = torch.arange(T) / sr
    root = int(torch.randint(45, 57, (), generator=g))
    minor = bool(torch.rand((), generator=g) < 0.5)
    progressions = ((0, 5, 3, 4), (0, 3, 4, 0), (5, 3, 0, 4), (0, 4, 5, 3))
    prog = progressions[int(torch.randint(len(progressions), (), generator=g))]
    bar = 4 * beat
    chord_starts = _grid(-bar, dur, bar, offset)
    chords = [_chord_tones(root, minor, prog[i % 4]) for i in range(len(chord_starts))]

    # bass: saw-like (6 harmonics at 1/k) on the chord roots, 8th notes
    bass_starts = _grid(-beat, dur, beat / 2, offset)
    bass_notes = []
    for s in bass_starts:
        ci = max(i for i, c in enumerate(chord_starts) if c <= s + 1e-9)
        bass_notes.append(float(chords[ci][0] - 12))
    f_bass = _midi_hz(_piecewise(T, sr, bass_starts, bass_notes))
    phase = 2 * math.pi * torch.cumsum(f_bass / sr, 0)
    bass = sum(torch.sin(k * phase) / k for k in range(1, 7))
    bass = bass * _note_envelope(T, sr, bass_starts, [s + 0.45 * beat for s in bass_starts], 0.005, 0.03)
    bass = _rms_normalise(bass, _uniform(g, 0.06, 0.1))

    # other: sustained triads, sine + 2nd harmonic, slow attack, slow tremolo
    other = torch.zeros(T)
    env = _note_envelope(T, sr, chord_starts, [c + bar for c in chord_starts], 0.25, 0.2)
    for k in range(3):
        f = _midi_hz(_piecewise(T, sr, chord_starts, [float(c[k] + 12) for c in chords]))
        ph = 2 * math.pi * torch.cumsum(f / sr, 0)
        other = other + torch.sin(ph) + 0.3 * torch.sin(2 * ph)
    other = other * env * (1 + 0.15 * torch.sin(2 * math.pi * _uniform(g, 0.3, 1.0) * t))
    other = _rms_normalise(other, _uniform(g, 0.05, 0.08))

    # vocals: phrases of notes from the scale, vibrato, harmonics under a two-formant envelope
    scale = (0, 2, 3, 5, 7, 8, 10) if minor else (0, 2, 4, 5, 7, 9, 11)
    note_starts, note_ends, pitches, f1s, f2s = [], [], [], [], []
    time = offset + beat * float(torch.randint(0, 3, (), generator=g))
    degree = int(torch.randint(0, 7, (), generator=g))
    while time < dur:
        phrase_len = int(torch.randint(3, 7, (), generator=g))
        for _ in range(phrase_len):
            length = beat * (0.5, 1.0, 1.0, 1.5, 2.0)[int(torch.randint(5, (), generator=g))]
            degree = max(0, min(13, degree + int(torch.randint(-2, 3, (), generator=g))))
            pitch = root + 12 + scale[degree % 7] + 12 * (degree // 7)
            vowel = _VOWELS[int(torch.randint(len(_VOWELS), (), generator=g))]
            note_starts.append(time)
            note_ends.append(time + 0.9 * length)
            pitches.append(float(pitch))
            f1s.append(vowel[0])
            f2s.append(vowel[1])
            time += length
        time += beat * float(torch.randint(1, 4, (), generator=g))
    if not note_starts:
        note_starts, note_ends, pitches, f1s, f2s = [0.0], [0.0], [float(root + 12)], [800.0], [1200.0]
    f0 = _midi_hz(_piecewise(T, sr, note_starts, pitches))
    vib_rate, vib_depth = _uniform(g, 4.5, 6.5), _uniform(g, 0.01, 0.025)
    f0 = f0 * (1 + vib_depth * torch.sin(2 * math.pi * vib_rate * t))
    phase = 2 * math.pi * torch.cumsum(f0 / sr, 0)
    F1, F2 = _piecewise(T, sr, note_starts, f1s), _piecewise(T, sr, note_starts, f2s)
    ks = torch.arange(1, 9, dtype=torch.float32)
    hf = f0[:, None] * ks  # (T, K) harmonic frequencies
    amp = 0.05 + torch.exp(-(((hf - F1[:, None]) / 150.0) ** 2)) + 0.6 * torch.exp(-(((hf - F2[:, None]) / 250.0) ** 2))
    amp = amp * (hf < 3500.0) / ks
    vocals = (amp * torch.sin(phase[:, None] * ks)).sum(-1)
    vocals = vocals * _note_envelope(T, sr, note_starts, note_ends, 0.04, 0.06)
    vocals = _rms_normalise(vocals, _uniform(g, 0.08, 0.12))
    return vocals, bass, other


# ---------------------------------------------------------------------------------------
# Songs
# ---------------------------------------------------------------------------------------


@dataclass
class DemoSong:
    """One synthetic song and its planted ground truth.

    Attributes:
        stems: ``(S, 1, T)`` waveforms for :data:`STEM_NAMES` ("vocals", "drums", "bass", "other").
        mixture: ``(1, T)`` the sum of the stems.
        lyrics: 12 newline-separated lines.
        label: 1 iff the song carries the complete cause (all cause segments, both trigger lines).
        sample_rate: samples per second.
        seed: the seed the song was drawn from.
        cause_segments: the cause segments (of :data:`NUM_SEGMENTS`) where the dense drum
            pattern is planted: ``[2, 3, 4]`` for class 1, possibly a part of it or ``[]``
            for class 0. The pattern sits in the ``drums`` stem only.
        cause_lines: 0-based indices of the trigger lines present (two for class 1).
        decoy_segments: segments outside the cause segments where the same dense pattern
            plays without counting.
    """

    stems: Tensor
    mixture: Tensor
    lyrics: str
    label: int
    sample_rate: int
    seed: int
    cause_segments: list[int] = field(default_factory=list)
    cause_lines: list[int] = field(default_factory=list)
    decoy_segments: list[int] = field(default_factory=list)

    stem_names = STEM_NAMES

    @property
    def lines(self) -> list[str]:
        """The lyrics as a list of lines."""
        return self.lyrics.split("\n")

    @property
    def cause_features(self) -> list[str]:
        """The planted audio features named as ``StemFactorization`` names them (``drums_T2``)."""
        return [f"drums_T{s}" for s in self.cause_segments]


def make_song(
    label: int,
    seed: int,
    *,
    seconds: float = 6.0,
    sample_rate: int = 8000,
    drum_segments: Sequence[int] | None = None,
    trigger_words: Sequence[str] | None = None,
    decoy: bool | None = None,
) -> DemoSong:
    """Synthesise one song of class ``label`` (see the module docstring for the planted cause).

    Args:
        label: 1 ("positive": the complete cause) or 0.
        seed: seeds the ``torch.Generator`` every random choice is drawn from.
        seconds: duration.
        sample_rate: samples per second.
        drum_segments: force which of :data:`CAUSE_SEGMENTS` get the dense drum pattern.
        trigger_words: force which of :data:`TRIGGER_WORDS` get a trigger line. By default
            class 1 gets the complete cause and class 0 draws a kind from
            :data:`NEGATIVE_KINDS`. The two must agree with ``label`` when both are given.
        decoy: force the decoy pattern (a block from :data:`DECOY_BLOCKS`) on or off
            (default: drawn with probability 0.4).

    Returns:
        A :class:`DemoSong` with stems ``(4, 1, T)``, ``T = round(seconds * sample_rate)``.

    Raises:
        ValueError: on a label other than 0/1, forced cues that disagree with it, or a song
            too short for its segments.

    Example:
        >>> song = make_song(1, seed=0)
        >>> song.stems.shape, song.cause_segments, len(song.lines)
        (torch.Size([4, 1, 48000]), [2, 3, 4], 12)
    """
    if label not in (0, 1) or isinstance(label, bool):
        raise ValueError(f"expected label 0 or 1, got {label!r}")
    T = int(round(seconds * sample_rate))
    if T < NUM_SEGMENTS * 64:
        raise ValueError(f"expected at least {NUM_SEGMENTS * 64} samples, got {T} ({seconds} s at {sample_rate} Hz)")
    if drum_segments is not None and not set(drum_segments) <= set(CAUSE_SEGMENTS):
        raise ValueError(f"expected drum_segments among {CAUSE_SEGMENTS}, got {list(drum_segments)}")
    if trigger_words is not None and not set(trigger_words) <= set(TRIGGER_WORDS):
        raise ValueError(f"expected trigger_words among {TRIGGER_WORDS}, got {list(trigger_words)}")
    g = torch.Generator().manual_seed(int(seed))
    kinds = list(NEGATIVE_KINDS)
    drum_kind, lyric_kind = ("full", "both") if label == 1 else kinds[
        int(torch.multinomial(torch.tensor(list(NEGATIVE_KINDS.values())), 1, generator=g))
    ]
    partial = [s for s in CAUSE_SEGMENTS if bool(torch.rand((), generator=g) < 0.5)]
    if len(partial) in (0, len(CAUSE_SEGMENTS)):  # a non-empty proper subset
        partial = [CAUSE_SEGMENTS[int(torch.randint(len(CAUSE_SEGMENTS), (), generator=g))]]
    one_word = TRIGGER_WORDS[int(torch.randint(len(TRIGGER_WORDS), (), generator=g))]
    if drum_segments is None:
        drum_segments = {"none": [], "partial": partial, "full": list(CAUSE_SEGMENTS)}[drum_kind]
    if trigger_words is None:
        trigger_words = {"none": [], "one": [one_word], "both": list(TRIGGER_WORDS)}[lyric_kind]
    drum_segments, trigger_words = sorted(set(drum_segments)), [w for w in TRIGGER_WORDS if w in set(trigger_words)]
    complete = len(drum_segments) == len(CAUSE_SEGMENTS) and len(trigger_words) == len(TRIGGER_WORDS)
    if int(complete) != label:
        raise ValueError(
            f"expected label 1 exactly for the complete cause, got label {label} with drum_segments "
            f"{drum_segments} and trigger_words {trigger_words}"
        )
    use_decoy = bool(torch.rand((), generator=g) < _DECOY_PROB)
    decoy_block = DECOY_BLOCKS[int(torch.randint(len(DECOY_BLOCKS), (), generator=g))]
    if decoy is not None:
        use_decoy = bool(decoy)
    bpm = _uniform(g, 96.0, 132.0)
    beat = 60.0 / bpm
    offset = _uniform(g, 0.0, beat)
    # Lyrics, drums and the tonal stems draw from generators of their own, so that forcing
    # a different cue for the same seed changes the cue and nothing else.
    sub_seeds = torch.randint(2**62, (3,), generator=g).tolist()
    g_lyrics, g_drums, g_tonal = (torch.Generator().manual_seed(s) for s in sub_seeds)

    lines, cause_lines = _make_lyrics(trigger_words, g_lyrics)
    edges = [e / sample_rate for e in segment_edges(T)]
    decoy_segments = list(decoy_block) if use_decoy else []
    dense = [(edges[s], edges[s + 1]) for s in drum_segments + decoy_segments]
    # a small guard so a hit just before a segment edge does not ring into the next segment
    dense = [(a, b - 0.02) for a, b in dense]

    drums = _drums(T, sample_rate, beat, offset, dense, g_drums)
    vocals, bass, other = _tonal_stems(T, sample_rate, beat, offset, g_tonal)
    stems = torch.stack([vocals, drums, bass, other]).unsqueeze(1).to(torch.float32)
    return DemoSong(
        stems=stems,
        mixture=stems.sum(0),
        lyrics="\n".join(lines),
        label=label,
        sample_rate=sample_rate,
        seed=int(seed),
        cause_segments=drum_segments,
        cause_lines=cause_lines,
        decoy_segments=decoy_segments,
    )


def make_dataset(n: int, seed: int, *, seconds: float = 6.0, sample_rate: int = 8000) -> list[DemoSong]:
    """``n`` songs, alternating labels (0, 1, 0, ...), with per-song seeds ``seed * 1_000_003 + i``.

    Different ``seed`` values give disjoint songs for ``n < 1_000_003``.

    Args:
        n: number of songs.
        seed: dataset seed.
        seconds: duration of each song.
        sample_rate: samples per second.

    Returns:
        A list of :class:`DemoSong`.

    Raises:
        ValueError: on ``n < 1``.

    Example:
        >>> songs = make_dataset(4, seed=0)
        >>> [s.label for s in songs]
        [0, 1, 0, 1]
    """
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"expected n >= 1, got {n!r}")
    return [
        make_song(i % 2, seed * 1_000_003 + i, seconds=seconds, sample_rate=sample_rate) for i in range(n)
    ]
