"""The ``torchlime`` console script: ``demo``, ``explain``, ``explain-dataset``, ``aggregate``.

The only module (with ``plotting`` in Explanation) that touches files and the terminal.
"""

from __future__ import annotations

import argparse
import importlib
import sys
import time
from pathlib import Path
from typing import Any

import torch

__all__ = ["main", "load_model_spec", "read_audio", "prepare_song"]


def load_model_spec(spec: str, device: torch.device) -> dict[str, Any]:
    """Import ``module:factory`` and call ``factory(device)``.

    The factory returns a dict (or an object with these attributes): ``forward``
    (``forward(audio (n, C, T), input_ids (n, Q), attention_mask (n, Q)) -> (n, classes)``),
    ``sample_rate`` (the rate the model expects), ``tokenizer`` (a Hugging Face tokenizer),
    and optionally ``max_length``, ``labels`` (class names), ``apply_softmax`` (True when
    forward returns logits) and ``channels`` (1 for mono models, the default).

    Raises:
        ValueError: the spec is not ``module:factory``, the module or factory cannot be
            imported (says what was tried), or the factory's result lacks a field.
    """
    if spec.count(":") != 1 or not all(spec.split(":")):
        raise ValueError(f"expected --model as module:factory (e.g. torchlime.music.demo.model:factory), got {spec!r}")
    module_name, attr = spec.split(":")
    sys.path.insert(0, str(Path.cwd()))
    try:
        module = importlib.import_module(module_name)
    except Exception as err:  # noqa: BLE001 - reported with what was tried
        raise ValueError(
            f"could not import module {module_name!r} for --model {spec!r} (tried sys.path with the "
            f"current folder first): {type(err).__name__}: {err}"
        ) from err
    finally:
        sys.path.pop(0)
    factory = getattr(module, attr, None)
    if not callable(factory):
        raise ValueError(f"module {module_name!r} has no callable {attr!r} (for --model {spec!r})")
    made = factory(device)
    spec_dict = made if isinstance(made, dict) else {k: getattr(made, k) for k in dir(made) if not k.startswith("_")}
    missing = [k for k in ("forward", "sample_rate", "tokenizer") if k not in spec_dict]
    if missing:
        raise ValueError(f"expected the factory {spec!r} to provide forward, sample_rate and tokenizer; missing {missing}")
    return spec_dict


def read_audio(path: str | Path) -> tuple[torch.Tensor, int]:
    """Read an audio file with soundfile as ``(C, T)`` float32 and its rate.

    Raises:
        ValueError: missing or unreadable file.
    """
    import soundfile as sf

    path = Path(path)
    if not path.is_file():
        raise ValueError(f"expected an audio file, got {str(path)!r}, which does not exist")
    try:
        data, rate = sf.read(str(path), dtype="float32", always_2d=True)
    except Exception as err:  # noqa: BLE001 - soundfile raises several types
        raise ValueError(f"could not read audio file {str(path)!r}: {err}") from err
    return torch.from_numpy(data.T.copy()), int(rate)


def _write_outputs(exp: Any, out: Path, stem: str, labels: list[int], label_names: dict[int, str] | None) -> list[Path]:
    written = [exp.save_json(out / f"{stem}.json", num_features=20, label_names=label_names)]
    for label in labels:
        written.append(exp.save_figure(out / f"{stem}_label{label}.png", label))
        if exp.audio_factorization is not None and exp.feature_types.count("audio"):
            written.append(exp.save_audio(out / f"{stem}_label{label}_top_audio.wav", label))
    return written


def _print_top(exp: Any, labels: list[int], label_names: dict[int, str] | None, k: int = 10) -> None:
    for label in labels:
        name = (label_names or {}).get(label, str(label))
        print(f"\nlabel {label} ({name}): model {float(exp.prediction[label]):.3f}, surrogate "
              f"{exp.local_pred[label]:.3f}, R^2 {exp.score[label]:.3f}")
        for rank, item in enumerate(exp.get_explanation(label, k), 1):
            feature = item["feature"] if len(item["feature"]) <= 50 else item["feature"][:47] + "..."
            print(f"  {rank:>2}. {item['type']:<6} {feature:<50} {item['weight']:+.4f}")


def cmd_demo(args: argparse.Namespace) -> int:
    from .music import LyricsFactorization, MusicLime, StemFactorization
    from .music.demo import data as demo_data
    from .music.demo import factory as demo_factory

    device = torch.device(args.device)
    spec = demo_factory.factory(device)
    song = demo_data.make_song(args.label, args.song_seed)
    audio = StemFactorization(song.stems.to(device), sample_rate=song.sample_rate, num_segments=10)
    lyrics = LyricsFactorization(song.lyrics, spec["tokenizer"], unit="line", max_length=spec.get("max_length"), device=device)
    explainer = MusicLime(spec["forward"], apply_softmax=spec.get("apply_softmax", False))
    target = args.label
    start = time.perf_counter()
    exp = explainer.explain(
        audio, lyrics, targets=[target], n_samples=args.n_samples, num_features=args.num_features,
        generator=torch.Generator(device).manual_seed(args.seed), batch_size=args.batch_size,
        show_progress=not args.quiet, song_info={"demo_song_seed": args.song_seed, "label": args.label},
    )
    elapsed = time.perf_counter() - start
    names = spec.get("labels")
    label_names = dict(enumerate(names)) if names else None
    print(f"Demo song {args.song_seed} (true label {args.label}); explained in {elapsed:.2f} s "
          f"({args.n_samples} samples, {audio.num_features} audio + {lyrics.num_features} lyric features)")
    print(f"planted cause: drums in segments {song.cause_segments}, lyric lines {song.cause_lines}")
    _print_top(exp, [target], label_names)
    out = Path(args.out)
    for path in _write_outputs(exp, out, "demo", [target], label_names):
        print(f"wrote {path}")
    return 0


def prepare_song(spec: dict[str, Any], separator: Any, audio_path: str | Path, lyrics_path: str | Path,
                 args: argparse.Namespace, device: torch.device) -> tuple[Any, Any]:
    """Read, separate and factorize one song: its ``StemFactorization`` and ``LyricsFactorization``.

    Raises:
        ValueError: a missing or unreadable audio or lyrics file, lyrics with no unit.
    """
    from .music import LyricsFactorization, StemFactorization

    mixture, rate = read_audio(audio_path)
    lyrics_path = Path(lyrics_path)
    if not lyrics_path.is_file():
        raise ValueError(f"expected a lyrics text file, got {str(lyrics_path)!r}, which does not exist")
    text = lyrics_path.read_text(encoding="utf-8")
    if spec.get("channels", 1) == 1:
        mixture = mixture.mean(0, keepdim=True)
    audio = StemFactorization.from_separator(
        separator, mixture.to(device), rate, target_sample_rate=int(spec["sample_rate"]),
        num_segments=args.segments, keep_residual=args.keep_residual,
    )
    lyrics = LyricsFactorization(text, spec["tokenizer"], unit=args.unit, max_length=spec.get("max_length"), device=device)
    return audio, lyrics


def add_song_args(p: Any) -> None:
    """The options :func:`prepare_song` reads: separator, segments, lyric unit, residual."""
    p.add_argument("--separator", default="umxl", help="Open-Unmix model name or local checkpoint folder")
    p.add_argument("--segments", type=int, default=10)
    p.add_argument("--unit", default="line", choices=["line", "word"])
    p.add_argument("--keep-residual", action="store_true")


def cmd_explain(args: argparse.Namespace) -> int:
    from .music import MusicLime, OpenUnmixSeparator

    device = torch.device(args.device)
    spec = load_model_spec(args.model, device)
    separator = OpenUnmixSeparator(args.separator, device=device)
    audio, lyrics = prepare_song(spec, separator, args.audio, args.lyrics, args, device)
    explainer = MusicLime(spec["forward"], apply_softmax=spec.get("apply_softmax", False))
    generator = torch.Generator(device).manual_seed(args.seed)
    exp = explainer.explain(
        audio, lyrics, targets=args.targets, n_samples=args.n_samples, modality=args.modality,
        num_features=args.num_features, generator=generator, batch_size=args.batch_size,
        show_progress=not args.quiet, song_info={"audio": str(args.audio), "lyrics": str(args.lyrics)},
    )
    names = spec.get("labels")
    label_names = dict(enumerate(names)) if names else None
    _print_top(exp, list(args.targets), label_names)
    for path in _write_outputs(exp, Path(args.out), Path(args.audio).stem, list(args.targets), label_names):
        print(f"wrote {path}")
    return 0


def _evaluate_inputs(args: argparse.Namespace, device: torch.device) -> tuple[dict[str, Any], Any, Any, dict[str, Any]]:
    """The model spec, audio and lyrics factorizations and song info of ``torchlime evaluate``."""
    from .music import LyricsFactorization, OpenUnmixSeparator, StemFactorization

    given = [name for name in ("audio", "lyrics", "model") if getattr(args, name)]
    if args.demo:
        if given:
            raise ValueError(f"expected either --demo or --audio/--lyrics/--model, got --demo and --{given[0]}")
        from .music.demo import data as demo_data
        from .music.demo import factory as demo_factory

        spec = demo_factory.factory(device)
        song = demo_data.make_song(args.label, args.song_seed)
        audio = StemFactorization(song.stems.to(device), sample_rate=song.sample_rate, num_segments=args.segments)
        lyrics = LyricsFactorization(song.lyrics, spec["tokenizer"], unit=args.unit, max_length=spec.get("max_length"),
                                     device=device)
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


def cmd_evaluate(args: argparse.Namespace) -> int:
    import json
    import math

    from ._atomic import atomic_write
    from .evaluation import evaluate_explanation, evaluation_report, load_explanation, stability
    from .music import MusicLime

    if args.seeds == 1 or args.seeds < 0:
        raise ValueError(f"expected --seeds 0 (no stability) or >= 2 (reruns to compare), got {args.seeds}")
    if args.n_random < 0:
        raise ValueError(f"expected --n-random >= 0, got {args.n_random}")
    if args.heldout == 1 or args.heldout < 0:
        raise ValueError(f"expected --heldout 0 (no held-out R^2) or >= 2, got {args.heldout}")
    device = torch.device(args.device)
    spec, audio, lyrics, info = _evaluate_inputs(args, device)
    # Fail before explaining: the feature count follows from the factorizations.
    num_features = ((audio.num_features if args.modality != "lyrics" else 0)
                    + (lyrics.num_features if args.modality != "audio" else 0))
    for flag, value in (("--max-k", args.max_k), ("--top-k", args.top_k if args.seeds else None)):
        if value is not None and not 1 <= value <= num_features:
            raise ValueError(f"expected 1 <= {flag} <= F = {num_features} (the song's features), got {value}")
    explainer = MusicLime(spec["forward"], apply_softmax=spec.get("apply_softmax", False))
    settings = dict(n_samples=args.n_samples, num_features=args.num_features, modality=args.modality,
                    feature_selection="auto")
    if args.explanation:
        exp = load_explanation(args.explanation, audio=audio, lyrics=lyrics)
        settings.update({k: exp.metadata[k] for k in settings if k in exp.metadata})
        labels = list(args.targets) if args.targets else list(exp.labels)
    else:
        labels = list(args.targets) if args.targets else [args.label if args.demo else 1]
        exp = None

    def explain(generator: torch.Generator) -> Any:
        return explainer.explain(audio, lyrics, targets=labels, generator=generator, batch_size=args.batch_size,
                                 show_progress=not args.quiet, song_info=info, **settings)

    start = time.perf_counter()
    if exp is None:
        exp = explain(torch.Generator(device).manual_seed(args.seed))
    evaluation = evaluate_explanation(
        exp, explainer, labels=labels, max_k=args.max_k, absolute=args.absolute, n_random=args.n_random,
        n_heldout=args.heldout, generator=torch.Generator(device).manual_seed(args.seed), batch_size=args.batch_size,
    )
    stab = None
    if args.seeds:
        first = None if args.explanation else exp  # the explanation above is the run with --seed
        stab = stability(lambda g: first if first is not None and g.initial_seed() == args.seed else explain(g),
                         [args.seed + r for r in range(args.seeds)], k=args.top_k, absolute=args.absolute, device=device)
    elapsed = time.perf_counter() - start
    names = spec.get("labels")
    label_names = dict(enumerate(names)) if names else None
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


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="torchlime", description="Batched LIME explanations for music classifiers.")
    sub = parser.add_subparsers(dest="command", required=True)

    def common(p: argparse.ArgumentParser) -> None:
        p.add_argument("--out", default="torchlime_out", help="output folder (default: torchlime_out)")
        p.add_argument("--n-samples", type=int, default=1000)
        p.add_argument("--num-features", type=int, default=20)
        p.add_argument("--batch-size", type=int, default=100, help="perturbations per forward call")
        p.add_argument("--seed", type=int, default=0)
        p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
        p.add_argument("--quiet", action="store_true", help="no progress bar")

    demo = sub.add_parser("demo", help="explain a synthetic demo song with the shipped demo model (no download)")
    common(demo)
    demo.add_argument("--song-seed", type=int, default=7)
    demo.add_argument("--label", type=int, default=1, choices=[0, 1])
    demo.set_defaults(func=cmd_demo)

    explain = sub.add_parser("explain", help="explain one song with your model")
    common(explain)
    explain.add_argument("--audio", required=True, help="audio file (anything soundfile reads)")
    explain.add_argument("--lyrics", required=True, help="lyrics text file")
    explain.add_argument("--model", required=True, help="module:factory returning forward, sample_rate, tokenizer (e.g. torchlime.music.demo.factory:factory)")
    add_song_args(explain)
    explain.add_argument("--modality", default="both", choices=["both", "audio", "lyrics"])
    explain.add_argument("--targets", type=int, nargs="+", default=[1])
    explain.set_defaults(func=cmd_explain)

    from ._dataset_cli import add_parsers

    add_parsers(sub, common)

    evaluate = sub.add_parser("evaluate", help="faithfulness, stability and fidelity of a song's explanation")
    src = evaluate.add_argument_group("song and model (or --demo)")
    src.add_argument("--demo", action="store_true", help="the shipped demo model on a synthetic demo song (no files)")
    src.add_argument("--song-seed", type=int, default=7, help="demo song seed (with --demo)")
    src.add_argument("--label", type=int, default=1, choices=[0, 1], help="demo song class (with --demo)")
    src.add_argument("--audio", help="audio file (anything soundfile reads)")
    src.add_argument("--lyrics", help="lyrics text file")
    src.add_argument("--model", help="module:factory returning forward, sample_rate, tokenizer")
    add_song_args(src)
    exp_args = evaluate.add_argument_group("the explanation")
    exp_args.add_argument("--explanation",
                          help="evaluate this explanation JSON (from torchlime explain) instead of explaining first")
    exp_args.add_argument("--targets", type=int, nargs="+", default=None,
                          help="labels to evaluate (default: the explanation's, else 1 or the demo label)")
    exp_args.add_argument("--modality", default="both", choices=["both", "audio", "lyrics"])
    exp_args.add_argument("--n-samples", type=int, default=1000)
    exp_args.add_argument("--num-features", type=int, default=20)
    exp_args.add_argument("--seed", type=int, default=0, help="seed of the explanation, held-out masks and random orders")
    metrics = evaluate.add_argument_group("metrics")
    metrics.add_argument("--seeds", type=int, default=3,
                         help="reruns for stability, seeds --seed .. --seed+R-1 (R >= 2; 0 skips stability)")
    metrics.add_argument("--top-k", type=int, default=5, help="top-k set size for the Jaccard index")
    metrics.add_argument("--max-k", type=int, default=None, help="last deletion/insertion step (default: all features)")
    metrics.add_argument("--n-random", type=int, default=5, help="random feature orders as a baseline (0: none)")
    metrics.add_argument("--heldout", type=int, default=200, help="fresh masks for the held-out R^2 (0: none)")
    metrics.add_argument("--absolute", action="store_true", help="rank features by |weight| (default: by weight)")
    evaluate.add_argument("--out", default="torchlime_out/metrics.json", help="metrics JSON file")
    evaluate.add_argument("--batch-size", type=int, default=100, help="mask rows per forward call")
    evaluate.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    evaluate.add_argument("--quiet", action="store_true", help="no progress bar")
    evaluate.set_defaults(func=cmd_evaluate)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``torchlime`` console script."""
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (ValueError, RuntimeError, ImportError) as err:  # ImportError: a missing or broken extra
        print(f"torchlime {args.command}: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
