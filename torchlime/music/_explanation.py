"""``Explanation``: one song's multimodal explanation, MusicLIME's interface and files."""

from __future__ import annotations

import json
import os
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from .._atomic import atomic_write

__all__ = ["Explanation"]


class Explanation:
    """The surrogate of one song for each explained label.

    Attributes:
        labels: the explained class indices.
        feature_names: F names (``vocals_T3``, lyric lines or words).
        feature_types: F entries "audio" or "lyrics".
        weights: ``(K, F)`` coefficients (0 for features not selected).
        intercept, score, local_pred: dicts label -> float.
        local_exp: dict label -> [(feature index, weight)] of the selected features,
            sorted by |weight| descending (lime's ``local_exp``).
        prediction: the model's output for the unperturbed song, ``(classes,)``.
        metadata: how it was computed (n_samples, kernel, seed, ...).
    """

    def __init__(
        self,
        labels: list[int],
        feature_names: list[str],
        feature_types: list[str],
        weights: Tensor,
        intercept: dict[int, float],
        score: dict[int, float],
        local_pred: dict[int, float],
        local_exp: dict[int, list[tuple[int, float]]],
        prediction: Tensor,
        metadata: dict[str, Any],
        audio_factorization: Any = None,
        lyrics_factorization: Any = None,
    ) -> None:
        self.labels = labels
        self.feature_names = feature_names
        self.feature_types = feature_types
        self.weights = weights
        self.intercept = intercept
        self.score = score
        self.local_pred = local_pred
        self.local_exp = local_exp
        self.prediction = prediction
        self.metadata = metadata
        self.audio_factorization = audio_factorization
        self.lyrics_factorization = lyrics_factorization

    @classmethod
    def from_fit(cls, fit, selection, labels, names, types, prediction, *, audio_factorization=None,
                 lyrics_factorization=None, metadata=None) -> Explanation:
        """Build from a :class:`~torchlime.functional.SurrogateFit` of one song (``(1, K, F)``)."""
        coef = fit.coef.reshape(len(labels), -1).detach().cpu()
        order = selection.order.reshape(len(labels), -1).cpu()
        count = selection.count.reshape(len(labels)).cpu()
        local_exp = {}
        for k, label in enumerate(labels):
            used = order[k, : int(count[k])].tolist()
            pairs = [(int(i), float(coef[k, i])) for i in used]
            local_exp[label] = sorted(pairs, key=lambda x: abs(x[1]), reverse=True)
        take = lambda t: {label: float(v) for label, v in zip(labels, t.reshape(-1).tolist())}  # noqa: E731
        return cls(
            list(labels), list(names), list(types), coef, take(fit.intercept), take(fit.score),
            take(fit.local_pred), local_exp, prediction.detach().cpu(), dict(metadata or {}),
            audio_factorization, lyrics_factorization,
        )

    def _check_label(self, label: int) -> None:
        if label not in self.local_exp:
            raise ValueError(f"expected one of the explained labels {self.labels}, got {label}")

    def get_explanation(self, label: int, num_features: int = 10) -> list[dict[str, Any]]:
        """The top features as ``[{"type", "feature", "weight"}]`` (MusicLIME's format)."""
        self._check_label(label)
        return [
            {"type": self.feature_types[i], "feature": self.feature_names[i], "weight": w}
            for i, w in self.local_exp[label][:num_features]
        ]

    def get_sorted_components(
        self,
        label: int,
        positive_components: bool = True,
        negative_components: bool = True,
        num_components: int | str = "all",
        min_abs_weight: float = 0.0,
        return_indices: bool = False,
    ) -> list[Any]:
        """The explanation's components by |weight|, as MusicLIME's ``get_sorted_components``.

        Returns the audio of each audio component (``(C, T)`` tensor) and the text of
        each lyric unit, or their feature indices with ``return_indices=True``.
        """
        self._check_label(label)
        if not (positive_components or negative_components):
            raise ValueError("expected positive_components or negative_components to be True, got neither")
        picked = [
            (i, w) for i, w in self.local_exp[label]
            if abs(w) >= min_abs_weight and ((w > 0 and positive_components) or (w < 0 and negative_components))
        ]
        if num_components != "all":
            picked = picked[: int(num_components)]
        if return_indices:
            return [i for i, _ in picked]
        out = []
        for i, _ in picked:
            if self.feature_types[i] == "audio" and self.audio_factorization is not None:
                out.append(self.audio_factorization.component_audio([self.feature_names[i]]))
            else:
                out.append(self.feature_names[i])
        return out

    # -- export -------------------------------------------------------------------------------

    def to_dict(self, num_features: int = 10, label_names: dict[int, str] | None = None) -> dict[str, Any]:
        """MusicLIME's JSON schema (``metadata`` + ``explanations.label_<k>``) plus ours."""
        explanations = {}
        for label in self.labels:
            explanations[f"label_{label}"] = {
                "prediction_label": (label_names or {}).get(label, str(label)),
                "intercept": self.intercept[label],
                "score": self.score[label],
                "local_prediction": self.local_pred[label],
                "model_prediction": float(self.prediction[label]),
                "top_features": [
                    {"rank": r + 1, **item} for r, item in enumerate(self.get_explanation(label, num_features))
                ],
                # A list in metadata.feature_names order: lyric lines can repeat (a chorus).
                "weights": self.weights[self.labels.index(label)].tolist(),
            }
        num_audio = self.feature_types.count("audio")
        return {
            "metadata": {
                "timestamp": datetime.now(timezone.utc).isoformat(),
                "song_info": self.metadata.get("song_info", {}),
                "model_info": {
                    "total_audio_components": num_audio,
                    "total_text_lines": len(self.feature_types) - num_audio,
                    "total_features": len(self.feature_types),
                    "prediction": self.prediction.tolist(),
                },
                "explanation_params": {
                    **{k: v for k, v in self.metadata.items() if k != "song_info"},
                    "num_features_shown": num_features,
                },
                "feature_names": self.feature_names,
                "feature_types": self.feature_types,
                "generator": "torchlime",
            },
            "explanations": explanations,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Explanation:
        """Rebuild from :meth:`to_dict` (a saved JSON): weights, scores and the selected features.

        The selected features are those with a non-zero weight; the factorizations are
        not saved, so :meth:`get_sorted_components` returns names, not audio.

        Raises:
            ValueError: a dict that is not torchlime's explanation schema.
        """
        try:
            meta = data["metadata"]
            names = list(meta["feature_names"])
            types = list(meta["feature_types"])
            explanations = data["explanations"]
            labels = [int(key.split("_", 1)[1]) for key in explanations]
            rows = [[float(w) for w in explanations[f"label_{k}"]["weights"]] for k in labels]
            if any(len(row) != len(names) for row in rows):
                raise ValueError(f"{len(names)} weights per label")
            prediction = torch.tensor(meta["model_info"]["prediction"], dtype=torch.float32)
        except (KeyError, TypeError, ValueError, IndexError) as err:
            raise ValueError(
                f"expected torchlime's explanation JSON (metadata.feature_names, explanations.label_<k>.weights), "
                f"got a dict without {err}"
            ) from None
        weights = torch.tensor(rows, dtype=torch.float32).reshape(len(labels), len(names))
        local_exp = {
            k: sorted(((i, w) for i, w in enumerate(row) if w != 0), key=lambda p: abs(p[1]), reverse=True)
            for k, row in zip(labels, rows)
        }
        get = lambda key: {k: float(explanations[f"label_{k}"][key]) for k in labels}  # noqa: E731
        params = dict(meta.get("explanation_params", {}))
        params.pop("num_features_shown", None)
        params["song_info"] = meta.get("song_info", {})
        params["label_names"] = {k: str(explanations[f"label_{k}"].get("prediction_label", k)) for k in labels}
        return cls(labels, names, types, weights, get("intercept"), get("score"), get("local_prediction"),
                   local_exp, prediction, params)

    @classmethod
    def load_json(cls, path: str | os.PathLike) -> Explanation:
        """Read a file written by :meth:`save_json` (see :meth:`from_dict`)."""
        with open(path, encoding="utf-8") as f:
            try:
                data = json.load(f)
            except json.JSONDecodeError as err:
                raise ValueError(f"expected a JSON explanation in {str(path)!r}, got invalid JSON: {err}") from None
        try:
            return cls.from_dict(data)
        except ValueError as err:
            raise ValueError(f"{path}: {err}") from None

    def save_json(self, path: str | os.PathLike, num_features: int = 10, label_names: dict[int, str] | None = None) -> Path:
        """Write :meth:`to_dict` to ``path`` atomically."""
        data = self.to_dict(num_features, label_names)
        return atomic_write(path, lambda f: json.dump(data, f, indent=2))

    def save_audio(self, path: str | os.PathLike, label: int, num_components: int = 5, positive: bool = True) -> Path:
        """Write a WAV of the top audio components for ``label`` (hear the explanation)."""
        import soundfile as sf

        self._check_label(label)
        if self.audio_factorization is None:
            raise ValueError("expected an explanation with an audio factorization, got none")
        picked = [
            self.feature_names[i] for i, w in self.local_exp[label]
            if self.feature_types[i] == "audio" and ((w > 0) if positive else (w < 0))
        ][:num_components]
        audio = self.audio_factorization.component_audio(picked) if picked else (
            torch.zeros_like(self.audio_factorization.stems[0])
        )
        data = audio.detach().cpu().numpy().T
        rate = self.audio_factorization.sample_rate
        return atomic_write(path, lambda tmp: sf.write(tmp, data, rate, format="WAV"), mode=None)

    def save_figure(self, path: str | os.PathLike, label: int, num_lyrics: int = 10) -> Path:
        """A PNG: stems x segments heatmap of the weights beside the top lyric units."""
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        self._check_label(label)
        w = self.weights[self.labels.index(label)]
        audio_idx = [i for i, t in enumerate(self.feature_types) if t == "audio"]
        lyric_idx = [i for i, t in enumerate(self.feature_types) if t == "lyrics"]
        fig, axes = plt.subplots(1, 2, figsize=(12, 4), gridspec_kw={"width_ratios": [3, 2]})
        fac = self.audio_factorization
        if audio_idx and fac is not None:
            S, G = fac.num_stems, fac.num_segments
            grid = w[audio_idx].reshape(G, S).T.numpy()
            lim = max(float(np.abs(grid).max()), 1e-12)
            im = axes[0].imshow(grid, cmap="RdBu_r", vmin=-lim, vmax=lim, aspect="auto")
            axes[0].set_yticks(range(S), fac.stem_names)
            axes[0].set_xticks(range(G), [f"T{g}" for g in range(G)])
            axes[0].set_title(f"audio weights, label {label}")
            fig.colorbar(im, ax=axes[0])
        else:
            axes[0].axis("off")
        if lyric_idx:
            top = sorted(lyric_idx, key=lambda i: -abs(float(w[i])))[:num_lyrics][::-1]
            values = [float(w[i]) for i in top]
            axes[1].barh(range(len(top)), values, color=["tab:red" if v > 0 else "tab:blue" for v in values])
            axes[1].set_yticks(range(len(top)), [self.feature_names[i][:40] for i in top], fontsize=8)
            axes[1].set_title("top lyric units")
        else:
            axes[1].axis("off")
        fig.tight_layout()
        try:
            return atomic_write(path, lambda tmp: fig.savefig(tmp, dpi=100, format="png"), mode=None)
        finally:
            plt.close(fig)
