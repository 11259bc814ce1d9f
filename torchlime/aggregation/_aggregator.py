"""``GlobalAggregator``: global importance as a torchmetrics ``Metric``.

Shape glossary: R explanation rows, C classes, F features.
"""

from __future__ import annotations

import json
import math
import re
import warnings
from collections.abc import Iterable, Sequence
from typing import Any

import torch
from torch import Tensor

from .._checks import check_choice, check_int
from ..functional.aggregation import COMPONENTS, global_importance_update
from ._result import GlobalImportance

try:
    from torchmetrics import Metric
    from torchmetrics.utilities.distributed import gather_all_tensors
except ModuleNotFoundError as err:  # pragma: no cover - exercised only without the extra
    raise ModuleNotFoundError(
        "torchlime.GlobalAggregator needs torchmetrics: pip install 'torchlime[metrics]'"
    ) from err

__all__ = ["GlobalAggregator", "LABELS", "COMPONENTS", "FEATURE_TYPES", "SEGMENT_TOLERANCE"]

LABELS = ("predicted", "explained")
FEATURE_TYPES = ("all", "audio", "lyrics")
# Two explanations' segments are the same stretches when every boundary, as a fraction of
# its song's length, is within this of the other's (rounding to samples or to the
# milliseconds of a JSON file moves a boundary by far less).
SEGMENT_TOLERANCE = 0.005
# Explanations per batched update call: bounds the padded (E, R, F) tensors.
_CHUNK = 256

_DIGITS = re.compile(r"([0-9]+)")


def _natural_key(name: str) -> tuple[list[Any], str]:
    """Sort key: text compared as text, ASCII digit runs as numbers ("line 2" < "line 10").

    A digit run compares by (length without leading zeros, digits), which orders numbers
    like ``int`` would without converting them (a 5,000-digit run is beyond ``int``'s
    string limit). Names equal under that order ("a7", "a07") fall back to the name
    itself, so the order never depends on the input order.
    """
    parts: list[Any] = []
    for i, part in enumerate(_DIGITS.split(name)):
        if i % 2:  # re.split puts the captured digit runs at the odd positions
            value = part.lstrip("0")
            parts.append((len(value), value))
        else:
            parts.append(part)
    return parts, name


def _encode(strings: Sequence[str]) -> Tensor:
    """Strings as one uint8 tensor: per string, its UTF-8 length (4 bytes, big-endian), then its bytes.

    Length prefixes cannot collide with any character (a NUL in a lyric line is just a
    byte), and the concatenation of two encodings is the encoding of the concatenated
    lists, which is what gathering a ``cat`` state over processes does.
    """
    chunks = []
    for s in strings:
        data = s.encode("utf-8")
        chunks.append(len(data).to_bytes(4, "big"))
        chunks.append(data)
    blob = b"".join(chunks)
    return torch.frombuffer(bytearray(blob), dtype=torch.uint8) if blob else torch.zeros(0, dtype=torch.uint8)


def _decode(blob: Tensor) -> list[str]:
    """The strings of :func:`_encode` (also of several encodings concatenated)."""
    data = blob.detach().cpu().numpy().tobytes()
    out, at = [], 0
    while at < len(data):
        size = int.from_bytes(data[at : at + 4], "big")
        if at + 4 + size > len(data):  # pragma: no cover - a broken state, not user input
            raise RuntimeError(f"aggregator state broken: a name of {size} bytes at byte {at} of {len(data)}")
        out.append(data[at + 4 : at + 4 + size].decode("utf-8"))
        at += 4 + size
    return out


# -- the feature space an explanation lives in -------------------------------------------------


def _song(exp: Any) -> str:
    """How errors name the song of an explanation: its id and audio file, when recorded."""
    info = (getattr(exp, "metadata", None) or {}).get("song_info") or {}
    sid = info.get("id") if isinstance(info, dict) else None
    audio = info.get("audio") if isinstance(info, dict) else None
    if sid is not None and audio:
        return f"song {str(sid)!r} ({audio})"
    if sid is not None:
        return f"song {str(sid)!r}"
    if audio:
        return f"song {audio}"
    return "an explanation without song_info"


def _relative_segments(exp: Any) -> list[list[float]] | None:
    """The audio segments as ``[start, end]`` fractions of the song's length, if recorded.

    From the explanation's :class:`~torchlime.music.StemFactorization` (boundaries in
    samples), else from ``metadata["segment_times"]`` (``[[start_s, end_s], ...]``, with the
    song's length in ``metadata["duration_s"]`` or, without it, the last segment's end).
    Anything else (older files, malformed entries): None, the segments are not compared.
    """
    fac = getattr(exp, "audio_factorization", None)
    bounds, length = getattr(fac, "boundaries", None), None
    if bounds is not None and isinstance(getattr(fac, "stems", None), Tensor):
        length = fac.stems.shape[-1]
    else:
        meta = getattr(exp, "metadata", None) or {}
        bounds, length = meta.get("segment_times"), meta.get("duration_s")
    try:
        pairs = [(float(a), float(b)) for a, b in bounds]
        length = float(length) if length is not None else pairs[-1][1]
    except (TypeError, ValueError, IndexError):
        return None
    if not length > 0 or not all(math.isfinite(x) for pair in pairs for x in pair):
        return None
    return [[a / length, b / length] for a, b in pairs]


def _feature_space(exp: Any, feature_types: str) -> dict[str, Any]:
    """What must match between explanations aggregated together, as JSON types.

    Each entry is ``{"value": ..., "song": ...}`` (the song it was first seen in), for:
    ``modality``; with audio features counted, ``audio`` (the names of the audio features:
    stems x segments) and ``segments`` (their relative positions, where recorded); with
    lyrics counted, ``lyrics_unit``; ``label_names`` (the saved class names that are more
    than the class index).
    """
    meta = getattr(exp, "metadata", None) or {}
    song = _song(exp)
    space: dict[str, Any] = {}

    def put(key: str, value: Any) -> None:
        space[key] = {"value": value, "song": song}

    if meta.get("modality") is not None:
        put("modality", str(meta["modality"]))
    if feature_types != "lyrics":
        put("audio", [n for n, t in zip(exp.feature_names, exp.feature_types) if t == "audio"])
        segments = _relative_segments(exp)
        if segments is not None:
            put("segments", segments)
    if feature_types != "audio" and "lyrics" in exp.feature_types:
        unit = meta.get("lyrics_unit") or getattr(getattr(exp, "lyrics_factorization", None), "unit", None)
        if unit:
            put("lyrics_unit", str(unit))
    names = meta.get("label_names")
    if isinstance(names, dict):
        named = {str(k): str(v) for k, v in names.items() if str(v) != str(k)}
        if named:
            put("label_names", named)
    return space


def _names(names: list[str]) -> str:
    if not names:
        return "no audio features"
    shown = ", ".join(names) if len(names) <= 4 else f"{names[0]}, {names[1]}, ..., {names[-1]}"
    return f"{len(names)} audio features ({shown})"


def _merge_spaces(known: dict[str, Any], new: dict[str, Any]) -> dict[str, Any]:
    """``known`` with the entries only ``new`` has; ValueError where they disagree."""
    merged = dict(known)
    for key, entry in new.items():
        if key not in known:
            merged[key] = entry
            continue
        want, got = known[key]["value"], entry["value"]
        first, song = known[key]["song"], entry["song"]
        where = f"{song} is over another feature space than the explanations already aggregated"
        hint = "; aggregate explanations made with other settings separately"
        if key == "label_names":
            clash = {k: (want[k], v) for k, v in got.items() if k in want and want[k] != v}
            if clash:
                k, (a, b) = next(iter(clash.items()))
                raise ValueError(f"{where}: expected class {k} named {a!r} (as in {first}), got {b!r}{hint}")
            merged[key] = {"value": {**got, **want}, "song": first}
        elif key == "segments":
            if len(want) == len(got) and all(
                abs(x - y) <= SEGMENT_TOLERANCE for p, q in zip(want, got) for x, y in zip(p, q)
            ):
                continue
            show = lambda segs: "[" + ", ".join(f"{a:.3f}-{b:.3f}" for a, b in segs) + "]"  # noqa: E731
            raise ValueError(
                f"{where}: expected audio segments at {show(want)} of the song (as in {first}), got "
                f"{show(got)}: the same feature names are other stretches of the songs{hint}"
            )
        elif want != got:
            if key == "audio":
                raise ValueError(
                    f"{where}: expected {_names(want)} (as in {first}), got {_names(got)}: other stems or "
                    f"segments (--segments) make other features{hint}"
                )
            what = {"modality": "modality", "lyrics_unit": "lyrics unit"}[key]
            raise ValueError(f"{where}: expected {what} {want!r} (as in {first}), got {got!r}{hint}")
    return merged


class GlobalAggregator(Metric):
    """Aggregate local explanations into global importances per class.

    For every explanation with class c (its predicted class, or each explained label)
    and every feature j it keeps (its selected features, filtered by ``components`` and
    ``top_k``), ``|coef_j|`` is added to ``W[c, j]`` and 1 to ``N[c, j]``; :meth:`compute`
    turns these into LIME, average and homogeneity-weighted importance
    (:func:`torchlime.functional.global_importance`). Both kinds of update (explanations,
    or ``coef=``/``labels=`` tensors) go through one function,
    :func:`torchlime.functional.global_importance_update`, which also writes down the
    tie rule of ``top_k``: an :class:`~torchlime.music.Explanation` breaks ties in the
    order of its ``local_exp`` (as the MusicLIME notebook), tensors by feature index.
    The sums are torchmetrics states, so under ``torch.distributed`` every process adds
    its own songs and ``compute()`` reduces them (``sum``), and an aggregator can be a
    logged metric in a training loop.

    Two feature spaces:

    - fixed (``feature_names`` given, e.g. stems x segments): dense ``(C, F)`` states;
      an explanation over other features is an error;
    - open (``feature_names=None``, e.g. lyric lines or words, which differ per song):
      every update keeps its features' names (length-prefixed UTF-8 bytes, so they cross
      process boundaries with the sums and any character is safe); ``compute()`` merges
      them by name, in natural sort order ("line 2" before "line 10"), and lists the
      features some explanation kept. A repeated lyric line is one feature per occurrence
      (``LyricsFactorization`` names the second ``"<line> (2)"``): first occurrences merge
      across songs, second occurrences with second occurrences, and so on.

    Explanations are only merged by name when they live in the same feature space: an
    explanation of a model with another number of classes, with other audio features
    (stems x segments: ``vocals_T1`` of a 2-segment and of a 4-segment explanation are
    other stretches of the song), segments at other relative positions in their songs,
    another lyrics unit (line or word), another modality, or other saved class names
    than the ones already aggregated is refused with a ValueError naming the song. This
    holds across processes too (checked in :meth:`compute`).

    Args:
        num_classes: C, the model's number of classes.
        feature_names: the fixed feature space, or None for an open one.
        label: "predicted" (the class the model predicts for the unperturbed input, as
            the MusicLIME notebook; it must be among the explained labels) or
            "explained" (every explained label counts for its own class).
        components: which coefficients count: "positive" (the notebook), "negative",
            "both".
        top_k: keep only the ``top_k`` largest |coef| of each explanation (after the
            sign filter); None keeps all selected features.
        feature_types: "all", or only the "audio" or "lyrics" features of MusicLIME
            explanations.
        class_names: C names (default "0".."C-1").
        validate_args: check tensor updates for NaN/inf coefficients and labels out of
            range (one host sync per tensor update); turn off for a sync-free ``update``.
        **kwargs: passed to ``torchmetrics.Metric`` (``process_group``,
            ``sync_on_compute``, ...).

    Example:
        >>> import torch
        >>> from torchlime import GlobalAggregator
        >>> agg = GlobalAggregator(2, ["drums_T0", "bass_T0", "chorus"], class_names=["calm", "loud"])
        >>> agg.update(coef=torch.tensor([[0.25, 0.0, 0.25], [0.0, 0.5, -0.25]]),
        ...            labels=torch.tensor([1, 0]))
        >>> agg.update(coef=torch.tensor([[0.0, 0.0, 2.0]]), labels=torch.tensor([1]))
        >>> result = agg.compute()
        >>> result.top("loud", k=2)
        [('chorus', 1.5), ('drums_T0', 0.5)]
        >>> result.counts
        tensor([[0, 1, 0],
                [1, 0, 2]])
        >>> result.support  # explanations per class
        tensor([1, 2])
    """

    full_state_update = False
    is_differentiable = False
    higher_is_better = None

    def __init__(
        self,
        num_classes: int,
        feature_names: Sequence[str] | None = None,
        *,
        label: str = "predicted",
        components: str = "positive",
        top_k: int | None = None,
        feature_types: str = "all",
        class_names: Sequence[str] | None = None,
        validate_args: bool = True,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        num_classes = check_int(num_classes, "num_classes", 1)
        check_choice(label, "label", LABELS)
        check_choice(components, "components", COMPONENTS)
        check_choice(feature_types, "feature_types", FEATURE_TYPES)
        top_k = None if top_k is None else check_int(top_k, "top_k", 1)
        if class_names is not None and len(class_names) != num_classes:
            raise ValueError(f"expected {num_classes} class names, got {len(class_names)}")
        if feature_names is not None:
            feature_names = [str(f) for f in feature_names]
            if not feature_names:
                raise ValueError("expected at least one feature name, got none")
            if len(set(feature_names)) != len(feature_names):
                dup = sorted({f for f in feature_names if feature_names.count(f) > 1})
                raise ValueError(f"expected unique feature names, got duplicates {dup[:10]}")
        self.num_classes = num_classes
        self.feature_names = feature_names
        self.label = label
        self.components = components
        self.top_k = top_k
        self.feature_types = feature_types
        self.class_names = [str(c) for c in class_names] if class_names is not None else [str(c) for c in range(num_classes)]
        self.validate_args = validate_args
        self.add_state("support", torch.zeros(num_classes, dtype=torch.int64), dist_reduce_fx="sum")
        # The feature space of the explanations added (see _feature_space), one encoded JSON
        # per process: compute() checks that all processes saw the same one.
        self.add_state("spaces", [], dist_reduce_fx="cat")
        if feature_names is not None:
            self._index = {f: j for j, f in enumerate(feature_names)}
            F = len(feature_names)
            self.add_state("weight_sums", torch.zeros(num_classes, F, dtype=torch.float64), dist_reduce_fx="sum")
            self.add_state("counts", torch.zeros(num_classes, F, dtype=torch.int64), dist_reduce_fx="sum")
        else:
            # Open space: per update, its feature names and (F_u, C) sums, concatenated
            # over updates and processes; row r of the sums belongs to name r.
            self.add_state("names", [], dist_reduce_fx="cat")
            self.add_state("open_weight_sums", [], dist_reduce_fx="cat")
            self.add_state("open_counts", [], dist_reduce_fx="cat")

    @property
    def options(self) -> dict[str, Any]:
        """The aggregation settings, as stored with the result."""
        return {"label": self.label, "components": self.components, "top_k": self.top_k,
                "feature_types": self.feature_types}

    # -- update -------------------------------------------------------------------------

    def update(  # type: ignore[override]
        self,
        explanations: Any = None,
        *,
        coef: Tensor | None = None,
        labels: Tensor | None = None,
        feature_names: Sequence[str] | None = None,
        weights: Tensor | None = None,
        classes: Tensor | None = None,
    ) -> None:
        """Add explanations: MusicLIME :class:`~torchlime.music.Explanation` objects, or tensors.

        Args:
            explanations: one :class:`~torchlime.music.Explanation` or an iterable of them.
            coef: ``(..., F)`` surrogate coefficients, one explanation per row (0 for
                features not selected), e.g. ``(B, F)`` or ``(B, K, F)``.
            labels: ``(...)`` the class each row of ``coef`` counts for.
            feature_names: F names of the columns of ``coef`` (open space; a fixed space
                uses its own, and refuses other names).
            weights: deprecated name of ``coef``.
            classes: deprecated name of ``labels``.

        Raises:
            ValueError: both or neither of explanations and coef, an explanation over
                another feature space than the ones already added (or than the fixed
                space), a model with another number of classes, NaN or inf coefficients,
                a label out of range, a predicted class that was not explained
                (``label="predicted"``), shapes that do not match.
            TypeError: something that is not an explanation or a tensor.
        """
        coef = _renamed("weights", weights, "coef", coef)
        labels = _renamed("classes", classes, "labels", labels)
        if (explanations is None) == (coef is None):
            raise ValueError("expected either explanations or coef= (with labels=), got "
                             + ("both" if coef is not None else "neither"))
        if coef is not None:
            self._update_tensors(coef, labels, feature_names)
        else:
            items = [explanations] if hasattr(explanations, "local_exp") else list(explanations)
            self._update_explanations(items)

    def _update_tensors(self, coef: Tensor, labels: Tensor | None, feature_names: Sequence[str] | None) -> None:
        if not isinstance(coef, Tensor) or coef.dim() < 2:
            raise ValueError(f"expected coef of shape (..., F) with at least one row dim, e.g. (B, F) or (B, K, F), "
                             f"got {tuple(coef.shape) if isinstance(coef, Tensor) else type(coef).__name__}")
        if not isinstance(labels, Tensor):
            raise ValueError(f"expected labels= (a tensor of shape {tuple(coef.shape[:-1])}) with coef=, "
                             f"got {type(labels).__name__}")
        F = coef.shape[-1]
        if self.feature_names is None:
            if feature_names is None or len(feature_names) != F:
                raise ValueError(f"expected {F} feature_names for the columns of coef (open feature space), got "
                                 + ("none" if feature_names is None else str(len(feature_names))))
            names: list[str] | None = [str(f) for f in feature_names]
        else:
            if F != len(self.feature_names):
                raise ValueError(f"expected coef over the fixed feature space of {len(self.feature_names)} features, "
                                 f"got {F} columns")
            if feature_names is not None and [str(f) for f in feature_names] != self.feature_names:
                raise ValueError("expected feature_names equal to the aggregator's fixed feature_names (or none), "
                                 "got other names")
            names = None
        out = global_importance_update(
            coef.reshape(-1, F), labels.reshape(-1), self.num_classes, components=self.components,
            top_k=self.top_k, validate_args=self.validate_args,
        )
        self._accumulate(out.weight_sums.T, out.counts.T, out.support, names)

    def _update_explanations(self, items: Iterable[Any]) -> None:
        C = self.num_classes
        space = self._space()
        prepared: list[tuple[list[str], list[int], list[list[tuple[int, float]]]]] = []
        for exp in items:
            if not hasattr(exp, "local_exp"):
                raise TypeError(f"expected torchlime.music.Explanation objects, got {type(exp).__name__}")
            song = _song(exp)
            predicted = int(torch.as_tensor(exp.prediction).numel())
            if predicted != C:
                raise ValueError(
                    f"{song}: expected explanations of a model with num_classes={C} classes, got a prediction "
                    f"over {predicted} classes; aggregate explanations of other models separately"
                )
            new = _feature_space(exp, self.feature_types)
            space = new if space is None else _merge_spaces(space, new)
            allowed = [i for i, t in enumerate(exp.feature_types) if self.feature_types in ("all", t)]
            names = [exp.feature_names[i] for i in allowed]
            if self.feature_names is not None and names != self.feature_names:
                unknown = [f for f in names if f not in self._index][:5]
                raise ValueError(
                    f"{song}: expected explanations over the aggregator's fixed feature space "
                    f"({len(self.feature_names)} features), got one over {len(names)} features"
                    + (f" (e.g. {unknown})" if unknown else "")
                    + ": use one aggregator per feature space, feature_names=None for an open space, "
                    "or feature_types='audio'"
                )
            column = {i: j for j, i in enumerate(allowed)}
            pairs = self._labels_of(exp, song)
            rows = []
            for label, _ in pairs:
                # local_exp's entries in its order (the notebook's; ties are broken by it).
                listed = [(column[i], float(w)) for i, w in exp.local_exp[label] if i in column]
                for j, w in listed:
                    if not math.isfinite(w):
                        raise ValueError(f"{song}, label {label}: expected finite coef, got {w} for feature {names[j]!r}")
                rows.append(listed)
            prepared.append((names, [cls for _, cls in pairs], rows))
        # Nothing is added before every explanation of the call has passed its checks.
        if space is not None:
            self.spaces.clear()
            self.spaces.append(_encode([json.dumps(space)]).to(self.device))
        for start in range(0, len(prepared), _CHUNK):
            self._add_explanations(prepared[start : start + _CHUNK])

    def _add_explanations(self, prepared: list[tuple[list[str], list[int], list[list[tuple[int, float]]]]]) -> None:
        """One :func:`global_importance_update` over E checked explanations, padded to ``(E, R, F)``."""
        C = self.num_classes
        E = len(prepared)
        R = max(len(rows) for _, _, rows in prepared)
        F = max(len(names) for names, _, _ in prepared)
        at: tuple[list[int], list[int], list[int]] = ([], [], [])  # (explanation, row, feature) per entry
        values: list[float] = []
        ranks: list[int] = []
        for e, (_, _, rows) in enumerate(prepared):
            for r, listed in enumerate(rows):
                first: dict[int, float] = {}
                for j, w in listed:  # an index listed twice: its first entry
                    first.setdefault(j, w)
                n = len(first)
                at[0].extend([e] * n)
                at[1].extend([r] * n)
                at[2].extend(first)
                values.extend(first.values())
                ranks.extend(range(n))
        coef = torch.zeros(E, R, F, dtype=torch.float64)
        # Padding rows count for class C, which is no class: they add nothing, not even support.
        labels = torch.tensor([classes + [C] * (R - len(classes)) for _, classes, _ in prepared], dtype=torch.int64)
        # The tie order: listed features by their place in local_exp, then the rest by index.
        position = (torch.arange(F, dtype=torch.float64) + F).expand(E, R, F).clone()
        if values:
            index = tuple(torch.tensor(i, dtype=torch.long) for i in at)
            coef[index] = torch.tensor(values, dtype=torch.float64)
            position[index] = torch.tensor(ranks, dtype=torch.float64)
        out = global_importance_update(
            coef, labels, C, components=self.components, top_k=self.top_k,
            order=position.argsort(dim=-1, stable=True), validate_args=False,  # values checked above
        )
        valid = torch.arange(F) < torch.tensor([len(names) for names, _, _ in prepared]).unsqueeze(-1)  # (E, F)
        W = out.weight_sums.transpose(0, 1)[:, valid]  # (C, sum of F_e), explanation after explanation
        N = out.counts.transpose(0, 1)[:, valid]
        support = out.support.sum(0)
        if self.feature_names is not None:  # every explanation has exactly these columns
            Ff = len(self.feature_names)
            self._accumulate(W.reshape(C, E, Ff).sum(1).T, N.reshape(C, E, Ff).sum(1).T, support, None)
            return
        # Merge repeats of a name (other songs, a repeated chorus line) into one row;
        # features no explanation kept add nothing (compute() leaves them out in any case).
        kept = (N > 0).any(0).tolist()
        names = [f for names, _, _ in prepared for f in names]
        column: dict[str, int] = {}
        index = torch.tensor([column.setdefault(f, len(column)) for f, k in zip(names, kept) if k], dtype=torch.long)
        W, N = W[:, kept], N[:, kept]
        merged_W = torch.zeros(C, len(column), dtype=torch.float64).index_add_(1, index, W)
        merged_N = torch.zeros(C, len(column), dtype=torch.int64).index_add_(1, index, N)
        self._accumulate(merged_W.T, merged_N.T, support, list(column))

    def _space(self) -> dict[str, Any] | None:
        """The feature space of everything added so far (None: no explanation yet)."""
        space = None
        for blob in self.spaces if isinstance(self.spaces, list) else [self.spaces]:
            for text in _decode(blob):
                new = json.loads(text)
                space = new if space is None else _merge_spaces(space, new)
        return space

    def _labels_of(self, exp: Any, song: str) -> list[tuple[int, int]]:
        """(explained label, class it counts for) pairs of one explanation."""
        C = self.num_classes
        if self.label == "explained":
            pairs = [(int(label), int(label)) for label in exp.labels]
        else:
            predicted = int(torch.as_tensor(exp.prediction).argmax())
            if predicted not in exp.local_exp:
                raise ValueError(
                    f"{song}: expected the predicted class {predicted} among the explained labels "
                    f"{list(exp.labels)} (label='predicted'); explain it too, or use label='explained'"
                )
            pairs = [(predicted, predicted)]
        for label, cls in pairs:
            if not 0 <= cls < C:
                raise ValueError(f"{song}: expected labels in [0, {C}), got {cls}")
            if label not in exp.local_exp:
                raise ValueError(f"{song}: expected local_exp to hold every explained label, label {label} is missing")
        return pairs

    def _accumulate(self, sums: Tensor, counts: Tensor, support: Tensor, names: Sequence[str] | None) -> None:
        """Add ``(F_u, C)`` sums and counts of features ``names`` (None: the fixed space, in order)."""
        self.support += support.to(self.support.device)
        if self.feature_names is not None:
            self.weight_sums += sums.T.to(self.weight_sums.device)
            self.counts += counts.T.to(self.counts.device)
            return
        self.names.append(_encode(names).to(self.device))
        self.open_weight_sums.append(sums.to(self.device))
        self.open_counts.append(counts.to(self.device))

    def _sync_dist(self, dist_sync_fn: Any = gather_all_tensors, process_group: Any = None) -> None:
        # A process that saw nothing still takes part in the gather, with typed empty states
        # (torchmetrics would make them float32, which the gather cannot mix with uint8).
        if not self.spaces:
            self.spaces.append(torch.zeros(0, dtype=torch.uint8, device=self.device))
        if self.feature_names is None and not self.names:
            C = self.num_classes
            self.names.append(torch.zeros(0, dtype=torch.uint8, device=self.device))
            self.open_weight_sums.append(torch.zeros(0, C, dtype=torch.float64, device=self.device))
            self.open_counts.append(torch.zeros(0, C, dtype=torch.int64, device=self.device))
        super()._sync_dist(dist_sync_fn, process_group)

    # -- compute ------------------------------------------------------------------------

    def compute(self) -> GlobalImportance:  # type: ignore[override]
        """The global importances of everything added so far (all processes).

        Raises:
            ValueError: processes that aggregated explanations over different feature spaces.
        """
        self._space()  # the processes' spaces, gathered: raises where they disagree
        support = self.support.clone()
        if self.feature_names is not None:
            return GlobalImportance.from_sums(self.weight_sums.clone(), self.counts.clone(), self.feature_names,
                                              self.class_names, self.options, support)
        C = self.num_classes
        cat = lambda s, shape, dtype: (torch.cat(s) if isinstance(s, list) and s else s if isinstance(s, Tensor)  # noqa: E731
                                       else torch.zeros(shape, dtype=dtype, device=self.device))
        blob = cat(self.names, (0,), torch.uint8)
        sums = cat(self.open_weight_sums, (0, C), torch.float64).reshape(-1, C)
        counts = cat(self.open_counts, (0, C), torch.int64).reshape(-1, C)
        names = _decode(blob)
        if len(names) != sums.shape[0]:  # pragma: no cover - a broken state, not user input
            raise RuntimeError(f"aggregator state out of step: {len(names)} names for {sums.shape[0]} rows")
        vocab = sorted(set(names), key=_natural_key)
        col = {f: j for j, f in enumerate(vocab)}
        index = torch.tensor([col[f] for f in names], dtype=torch.long, device=sums.device)
        W = torch.zeros(C, len(vocab), dtype=torch.float64, device=sums.device).index_add_(1, index, sums.T)
        N = torch.zeros(C, len(vocab), dtype=torch.int64, device=sums.device).index_add_(1, index, counts.T)
        # An open space lists the features some explanation kept, whichever path added them.
        kept = (N > 0).any(0)
        vocab = [f for f, k in zip(vocab, kept.tolist()) if k]
        return GlobalImportance.from_sums(W[:, kept], N[:, kept], vocab, self.class_names, self.options, support)


def _renamed(old: str, old_value: Any, new: str, new_value: Any) -> Any:
    """The value of a renamed keyword: the new one, or the old one with a DeprecationWarning."""
    if old_value is None:
        return new_value
    if new_value is not None:
        raise ValueError(f"expected {new}= or its deprecated name {old}=, got both")
    warnings.warn(
        f"GlobalAggregator.update({old}=...) is deprecated and will be removed in the next release: "
        f"use {new}=", DeprecationWarning, stacklevel=4,  # the caller, above update and torchmetrics' wrapper
    )
    return old_value
