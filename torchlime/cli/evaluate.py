"""``torchlime evaluate``: faithfulness, stability and fidelity of a song's explanation."""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path
from typing import Any

import torch

from .._checks import check_int
from ._common import (
    MODALITIES,
    SETTING_DEFAULTS,
    ModelSpec,
    SongFiles,
    add_command,
    add_run_args,
    add_song_args,
    add_target_args,
    check_outputs,
    check_run_args,
    choose_targets,
    device_of,
    explain,
    load_model_spec,
    make_separator,
    parse_targets,
    target_spec,
    prepare_song,
    sampling_options,
    shorten,
    song_options,
)
from .demo import demo_song

__all__ = ["add_parser", "run"]


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = add_command(sub, "evaluate", "faithfulness, stability and fidelity of a song's explanation",
                    "Explain a song (or read a saved explanation) and measure it: deletion and insertion curves, "
                    "AOPC against random feature orders, the surrogate's R^2 in sample and on held-out masks, and "
                    "the stability of the weights over reruns with other seeds. Writes <out>/<song>_metrics.json.")
    src = p.add_argument_group("song and model (or --demo; with --explanation, what it records is the default)")
    src.add_argument("--demo", action="store_true", help="the shipped demo model on a synthetic demo song (no files)")
    src.add_argument("--song-seed", type=int, default=None, help="demo song seed (default: 7)")
    src.add_argument("--label", type=int, default=None, choices=[0, 1], help="demo song class (default: 1)")
    src.add_argument("--audio", default=None, metavar="FILE",
                     help="audio file (anything soundfile reads) (default: what --explanation records)")
    src.add_argument("--lyrics", default=None, metavar="FILE",
                     help="lyrics text file (UTF-8) (default: what --explanation records)")
    src.add_argument("--model", default=None, metavar="MODULE:FACTORY",
                     help="a factory returning forward, sample_rate, tokenizer (default: what --explanation records)")
    add_song_args(src)
    exp_args = p.add_argument_group("the explanation")
    exp_args.add_argument("--explanation", default=None, metavar="JSON",
                          help="evaluate this explanation (from torchlime explain) instead of explaining first; its "
                               "song, model and settings are the defaults of the options above (default: explain "
                               "first)")
    add_target_args(exp_args, default="the explanation's labels, else the predicted class only")
    exp_args.add_argument("--modality", default="both", choices=MODALITIES,
                          help="what is perturbed (default: both, or the explanation's)")
    metrics = p.add_argument_group("metrics")
    metrics.add_argument("--seeds", type=int, default=3,
                         help="reruns for stability, seeds --seed .. --seed+R-1 (R >= 2; 0 skips stability)")
    metrics.add_argument("--top-k", type=int, default=5, help="top-k set size for the Jaccard index")
    metrics.add_argument("--max-k", type=int, default=None, help="last deletion/insertion step (default: all features)")
    metrics.add_argument("--n-random", type=int, default=5, help="random feature orders as a baseline (0: none)")
    metrics.add_argument("--heldout", type=int, default=200, help="fresh masks for the held-out R^2 (0: none)")
    metrics.add_argument("--absolute", action="store_true", help="rank features by |weight| (default: by weight)")
    add_run_args(p)
    p.set_defaults(run=run)


def _recorded(path: str | None) -> dict[str, Any]:
    """The song info an explanation JSON records ({} without --explanation).

    Raises:
        ValueError: a missing file or invalid JSON.
    """
    if path is None:
        return {}
    file = Path(path)
    if not file.is_file():
        raise ValueError(f"expected an explanation JSON file, got {str(file)!r}, which does not exist")
    try:
        data = json.loads(file.read_text(encoding="utf-8"))
        info = data["metadata"].get("song_info", {})
    except (ValueError, KeyError, TypeError, AttributeError) as err:
        raise ValueError(f"expected torchlime's explanation JSON in {str(file)!r}, got {type(err).__name__}: "
                         f"{err}") from None
    return info if isinstance(info, dict) else {}


def _inputs(args: argparse.Namespace, recorded: dict[str, Any], device: torch.device
            ) -> tuple[ModelSpec, Any, Any, dict[str, Any], str, str | None]:
    """The model spec, factorizations, song info, output name and recorded source of ``evaluate``."""
    given = [f"--{name}" for name in ("audio", "lyrics", "model", "stems") if getattr(args, name)]
    demo = args.demo or (not given and "demo_song_seed" in recorded)
    if demo:
        if given:
            raise ValueError(f"expected either --demo or --audio/--lyrics/--model, got --demo and {given[0]}")
        options = song_options(args, recorded)
        seed = args.song_seed if args.song_seed is not None else recorded.get("demo_song_seed", 7)
        label = args.label if args.label is not None else recorded.get("label", 1)
        spec, audio, lyrics, info, _ = demo_song(int(label), int(seed), options.segments, options.unit, device)
        return spec, audio, lyrics, info, "demo", None

    def pick(name: str) -> Any:
        return getattr(args, name) or recorded.get(name)

    missing = [f"--{name}" for name in ("lyrics", "model") if not pick(name)]
    if not pick("audio") and not pick("stems"):
        missing.insert(0, "--audio")
    if missing:
        raise ValueError(f"expected --audio, --lyrics and --model (or --demo, or an --explanation that records "
                         f"them), missing {', '.join(missing)}")
    song = SongFiles(lyrics=Path(pick("lyrics")), audio=Path(pick("audio")) if pick("audio") else None,
                     stems=Path(pick("stems")) if pick("stems") else None)
    song.check()
    if song.stems is not None and args.separator is not None:
        raise ValueError(f"expected --stems or --separator, got both (--separator {args.separator})")
    options = song_options(args, recorded)
    separator = make_separator(options, device, args.quiet) if song.stems is None else None
    model = pick("model")
    spec = load_model_spec(model, device)
    audio, lyrics = prepare_song(spec, separator, song, options, device)
    return spec, audio, lyrics, song.info(options, model), song.name, song.source


def _recorded_settings(settings: dict[str, Any], metadata: dict[str, Any]) -> dict[str, Any]:
    """``settings`` (the explain options) with what a saved explanation's metadata records
    instead: the stability reruns are made as the explanation was. An explanation with
    ``n_samples_rule`` auto records the samples it used as ``n_samples``: its reruns are
    "auto" again, with its ``tol`` and ``max_samples``; one without a ``sampler`` was drawn iid.

    Example:
        >>> _recorded_settings(dict(n_samples=1000, sampler="iid", modality="both"),
        ...                    dict(n_samples=480, n_samples_rule="auto", tol=0.1, max_samples=800, modality="audio"))
        {'n_samples': 'auto', 'sampler': 'iid', 'modality': 'audio', 'tol': 0.1, 'max_samples': 800}
    """
    metadata = {**SETTING_DEFAULTS, **metadata}
    out = {k: metadata.get(k, v) for k, v in settings.items() if k not in ("tol", "max_samples")}
    if metadata.get("n_samples_rule") == "auto":
        out.update(n_samples="auto", tol=metadata["tol"], max_samples=metadata["max_samples"])
    elif out["n_samples"] == "auto":  # an explanation that records no n_samples: the options' budget
        out.update(tol=settings["tol"], max_samples=settings["max_samples"])
    return out


def run(args: argparse.Namespace) -> int:
    from .._atomic import atomic_write
    from ..evaluation import evaluate_explanation, evaluation_report, load_explanation, stability

    check_run_args(args)
    if args.seeds == 1 or args.seeds < 0:
        raise ValueError(f"expected --seeds 0 (no stability) or >= 2 (reruns to compare), got {args.seeds}")
    check_int(args.n_random, "--n-random", 0)
    if args.heldout == 1 or args.heldout < 0:
        raise ValueError(f"expected --heldout 0 (no held-out R^2) or >= 2, got {args.heldout}")
    asked = parse_targets(args.target)
    out = Path(args.out)
    if out.suffix.lower() == ".json":
        raise ValueError(f"expected --out to be a folder (evaluate writes <out>/<song>_metrics.json), got "
                         f"{str(out)!r}, a .json file name")
    recorded = _recorded(args.explanation)
    device = device_of(args)
    spec, audio, lyrics, info, name, source = _inputs(args, recorded, device)
    if args.explanation:
        name = Path(args.explanation).stem
    path = out / f"{name}_metrics.json"
    if source is not None:
        check_outputs(path, source, "settings", "song_info")
    # Fail before explaining: the feature count follows from the factorizations.
    num_features = ((audio.num_features if args.modality != "lyrics" else 0)
                    + (lyrics.num_features if args.modality != "audio" else 0))
    for flag, value in (("--max-k", args.max_k), ("--top-k", args.top_k if args.seeds else None)):
        if value is not None and not 1 <= value <= num_features:
            raise ValueError(f"expected 1 <= {flag} <= F = {num_features} (the song's features), got {value}")
    explainer = spec.explainer()
    settings = dict(**sampling_options(args), num_features=args.num_features, modality=args.modality,
                    feature_selection="auto")
    if args.explanation:
        exp = load_explanation(args.explanation, audio=audio, lyrics=lyrics)
        settings = _recorded_settings(settings, exp.metadata)
        labels = (choose_targets(exp.prediction, asked) if asked is not None else list(exp.labels))
    else:
        labels = target_spec(asked)  # the predicted class is resolved by the first explanation
        exp = None

    def explain_with(generator: torch.Generator) -> Any:
        return explain(explainer, audio, lyrics, labels, generator=generator,
                       perturbations_per_eval=args.perturbations_per_eval, show_progress=not args.quiet,
                       song_info=info, memory_budget=args.memory_budget, **settings)

    start = time.perf_counter()
    if exp is None:
        exp = explain_with(torch.Generator(device).manual_seed(args.seed))
        labels = list(exp.labels)
    evaluation = evaluate_explanation(
        exp, explainer, labels=labels, max_k=args.max_k, absolute=args.absolute, n_random=args.n_random,
        n_heldout=args.heldout, generator=torch.Generator(device).manual_seed(args.seed),
        batch_size=args.perturbations_per_eval,
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
        cname = (label_names or {}).get(label, str(label))
        baseline = f" (random orders {fmt(f.random_aopc[k])})" if f.random_aopc is not None else ""
        print(f"\nlabel {label} ({cname}): AOPC {fmt(f.aopc[k])}{baseline}; deletion AUC {fmt(f.deletion_auc[k])}, "
              f"insertion AUC {fmt(f.insertion_auc[k])}")
        top = min(args.top_k, steps)
        shown = ", ".join(shorten(exp.feature_names[i], 30) for i in f.order[k, :top].tolist())
        print(f"  deleting the top {top} ({shown}): {fmt(f.deletion[k, 0])} -> {fmt(f.deletion[k, top])}")
        heldout = evaluation.heldout_score[k] if evaluation.heldout_score is not None else None
        print(f"  surrogate R^2 {fmt(evaluation.score[k])} in sample, {fmt(heldout)} held out")
        if stab is not None:
            print(f"  stability over {len(stab.seeds)} seeds: Spearman {fmt(stab.mean_spearman[k])}, "
                  f"top-{stab.k} Jaccard {fmt(stab.mean_jaccard[k])}")
    written = atomic_write(path, lambda fh: json.dump(report, fh, indent=2))
    print(f"wrote {written}")
    return 0
