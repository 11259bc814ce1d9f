"""``torchlime evaluate``: faithfulness, stability and fidelity of a song's explanation."""

from __future__ import annotations

import argparse
import json
import math
import time
from typing import Any

import torch

from ._common import ModelSpec, add_song_args, explain, load_model_spec, prepare_song

__all__ = ["add_parser", "run"]


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("evaluate", help="faithfulness, stability and fidelity of a song's explanation")
    src = p.add_argument_group("song and model (or --demo)")
    src.add_argument("--demo", action="store_true", help="the shipped demo model on a synthetic demo song (no files)")
    src.add_argument("--song-seed", type=int, default=7, help="demo song seed (with --demo)")
    src.add_argument("--label", type=int, default=1, choices=[0, 1], help="demo song class (with --demo)")
    src.add_argument("--audio", help="audio file (anything soundfile reads)")
    src.add_argument("--lyrics", help="lyrics text file")
    src.add_argument("--model", help="module:factory returning forward, sample_rate, tokenizer")
    add_song_args(src)
    exp_args = p.add_argument_group("the explanation")
    exp_args.add_argument("--explanation",
                          help="evaluate this explanation JSON (from torchlime explain) instead of explaining first")
    exp_args.add_argument("--targets", type=int, nargs="+", default=None,
                          help="labels to evaluate (default: the explanation's, else 1 or the demo label)")
    exp_args.add_argument("--modality", default="both", choices=["both", "audio", "lyrics"])
    exp_args.add_argument("--n-samples", type=int, default=1000)
    exp_args.add_argument("--num-features", type=int, default=20)
    exp_args.add_argument("--seed", type=int, default=0, help="seed of the explanation, held-out masks and random orders")
    metrics = p.add_argument_group("metrics")
    metrics.add_argument("--seeds", type=int, default=3,
                         help="reruns for stability, seeds --seed .. --seed+R-1 (R >= 2; 0 skips stability)")
    metrics.add_argument("--top-k", type=int, default=5, help="top-k set size for the Jaccard index")
    metrics.add_argument("--max-k", type=int, default=None, help="last deletion/insertion step (default: all features)")
    metrics.add_argument("--n-random", type=int, default=5, help="random feature orders as a baseline (0: none)")
    metrics.add_argument("--heldout", type=int, default=200, help="fresh masks for the held-out R^2 (0: none)")
    metrics.add_argument("--absolute", action="store_true", help="rank features by |weight| (default: by weight)")
    p.add_argument("--out", default="torchlime_out/metrics.json", help="metrics JSON file")
    p.add_argument("--batch-size", type=int, default=100, help="mask rows per forward call")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(run=run)


def _inputs(args: argparse.Namespace, device: torch.device) -> tuple[ModelSpec, Any, Any, dict[str, Any]]:
    """The model spec, audio and lyrics factorizations and song info of ``torchlime evaluate``."""
    from ..music import OpenUnmixSeparator, StemFactorization

    given = [name for name in ("audio", "lyrics", "model") if getattr(args, name)]
    if args.demo:
        if given:
            raise ValueError(f"expected either --demo or --audio/--lyrics/--model, got --demo and --{given[0]}")
        from ..music.demo import data as demo_data
        from ..music.demo import factory as demo_factory

        spec = ModelSpec.from_factory(demo_factory.factory(device), "torchlime.music.demo.factory:factory")
        song = demo_data.make_song(args.label, args.song_seed)
        audio = StemFactorization(song.stems.to(device), sample_rate=song.sample_rate, num_segments=args.segments)
        lyrics = spec.lyrics(song.lyrics, args.unit, device)
        info = {"demo_song_seed": args.song_seed, "label": args.label, "planted_cause":
                song.cause_features + [song.lines[i] for i in song.cause_lines]}
        return spec, audio, lyrics, info
    missing = [f"--{name}" for name in ("audio", "lyrics", "model") if not getattr(args, name)]
    if missing:
        raise ValueError(f"expected --audio, --lyrics and --model (or --demo), missing {', '.join(missing)}")
    spec = load_model_spec(args.model, device)
    separator = OpenUnmixSeparator(args.separator, device=device)
    audio, lyrics = prepare_song(spec, separator, args.audio, args.lyrics, args, device)
    return spec, audio, lyrics, {"audio": str(args.audio), "lyrics": str(args.lyrics)}


def run(args: argparse.Namespace) -> int:
    from .._atomic import atomic_write
    from ..evaluation import evaluate_explanation, evaluation_report, load_explanation, stability

    if args.seeds == 1 or args.seeds < 0:
        raise ValueError(f"expected --seeds 0 (no stability) or >= 2 (reruns to compare), got {args.seeds}")
    if args.n_random < 0:
        raise ValueError(f"expected --n-random >= 0, got {args.n_random}")
    if args.heldout == 1 or args.heldout < 0:
        raise ValueError(f"expected --heldout 0 (no held-out R^2) or >= 2, got {args.heldout}")
    device = torch.device(args.device)
    spec, audio, lyrics, info = _inputs(args, device)
    # Fail before explaining: the feature count follows from the factorizations.
    num_features = ((audio.num_features if args.modality != "lyrics" else 0)
                    + (lyrics.num_features if args.modality != "audio" else 0))
    for flag, value in (("--max-k", args.max_k), ("--top-k", args.top_k if args.seeds else None)):
        if value is not None and not 1 <= value <= num_features:
            raise ValueError(f"expected 1 <= {flag} <= F = {num_features} (the song's features), got {value}")
    explainer = spec.explainer()
    settings = dict(n_samples=args.n_samples, num_features=args.num_features, modality=args.modality,
                    feature_selection="auto")
    if args.explanation:
        exp = load_explanation(args.explanation, audio=audio, lyrics=lyrics)
        settings.update({k: exp.metadata[k] for k in settings if k in exp.metadata})
        labels = list(args.targets) if args.targets else list(exp.labels)
    else:
        labels = list(args.targets) if args.targets else [args.label if args.demo else 1]
        exp = None

    def explain_with(generator: torch.Generator) -> Any:
        return explain(explainer, audio, lyrics, labels, generator=generator, perturbations_per_eval=args.batch_size,
                       show_progress=not args.quiet, song_info=info, **settings)

    start = time.perf_counter()
    if exp is None:
        exp = explain_with(torch.Generator(device).manual_seed(args.seed))
    evaluation = evaluate_explanation(
        exp, explainer, labels=labels, max_k=args.max_k, absolute=args.absolute, n_random=args.n_random,
        n_heldout=args.heldout, generator=torch.Generator(device).manual_seed(args.seed), batch_size=args.batch_size,
    )
    stab = None
    if args.seeds:
        first = None if args.explanation else exp  # the explanation above is the run with --seed
        stab = stability(lambda g: first if first is not None and g.initial_seed() == args.seed else explain_with(g),
                         [args.seed + r for r in range(args.seeds)], k=args.top_k, absolute=args.absolute, device=device)
    elapsed = time.perf_counter() - start
    label_names = spec.label_names
    report = evaluation_report(evaluation, stab, label_names=label_names, absolute=args.absolute, settings=dict(
        explanation=str(args.explanation) if args.explanation else None, explain=settings, seed=args.seed,
        seeds=args.seeds, top_k=args.top_k, max_k=args.max_k, n_random=args.n_random, heldout=args.heldout,
        song_info=info, seconds=round(elapsed, 3),
    ))
    f = evaluation.faithfulness
    steps = f.deletion.shape[-1] - 1
    print(f"Evaluated {len(exp.feature_names)} features ({steps} deletion/insertion steps) in {elapsed:.2f} s")
    for k, label in enumerate(evaluation.labels):
        fmt = lambda t: "n/a" if t is None or not math.isfinite(float(t)) else f"{float(t):.3f}"  # noqa: E731
        name = (label_names or {}).get(label, str(label))
        baseline = f" (random orders {fmt(f.random_aopc[k])})" if f.random_aopc is not None else ""
        print(f"\nlabel {label} ({name}): AOPC {fmt(f.aopc[k])}{baseline}; deletion AUC {fmt(f.deletion_auc[k])}, "
              f"insertion AUC {fmt(f.insertion_auc[k])}")
        top = min(args.top_k, steps)
        shown = ", ".join(exp.feature_names[i][:30] for i in f.order[k, :top].tolist())
        print(f"  deleting the top {top} ({shown}): {fmt(f.deletion[k, 0])} -> {fmt(f.deletion[k, top])}")
        heldout = evaluation.heldout_score[k] if evaluation.heldout_score is not None else None
        print(f"  surrogate R^2 {fmt(evaluation.score[k])} in sample, {fmt(heldout)} held out")
        if stab is not None:
            print(f"  stability over {len(stab.seeds)} seeds: Spearman {fmt(stab.mean_spearman[k])}, "
                  f"top-{stab.k} Jaccard {fmt(stab.mean_jaccard[k])}")
    path = atomic_write(args.out, lambda fh: json.dump(report, fh, indent=2))
    print(f"wrote {path}")
    return 0
