"""The quality benchmark (issue 13): its exact Shapley values and its replayed fits equal the
references, and a ``--tiny`` run writes well-formed results (no quality thresholds: measured only)."""

import json

import pytest
import torch

for _module in ("captum", "lime", "sklearn", "transformers", "matplotlib"):
    pytest.importorskip(_module)

from benchmarks import bench_quality  # noqa: E402
from benchmarks.__main__ import parse_args  # noqa: E402


@pytest.mark.parametrize("cls", [bench_quality.MLP, bench_quality.Interactions])
def test_exact_shapley_equals_captum_shapley_values(cls):
    import captum.attr

    F = 5
    model = cls(F, seed=3)
    x = torch.randn(F, generator=torch.Generator().manual_seed(4), dtype=torch.float64)
    base = torch.full((F,), 0.3, dtype=torch.float64)
    ours = bench_quality.exact_shapley(model, x, base)
    theirs = captum.attr.ShapleyValues(model).attribute(x.unsqueeze(0), baselines=base.unsqueeze(0))[0]
    # Captum accumulates its marginal contributions in float32: 1e-5 is its precision, not ours
    torch.testing.assert_close(ours, theirs.to(torch.float64), rtol=1e-5, atol=1e-6)
    # efficiency: the values add up to f(x) - f(baseline)
    torch.testing.assert_close(ours.sum(), (model(x[None]) - model(base[None]))[0], rtol=1e-9, atol=1e-12)


def test_demo_fit_is_what_musiclime_explain_computes():
    from torchlime.functional import MaskSampler
    from torchlime.music import LyricsFactorization, MusicLime, StemFactorization
    from torchlime.music.demo import DEMO_MAX_LENGTH, load_demo, make_song

    model, tokenizer = load_demo("cpu")
    song = make_song(1, 7)
    audio = StemFactorization(song.stems, sample_rate=song.sample_rate, num_segments=10)
    lyrics = LyricsFactorization("\n".join(song.lines), tokenizer, unit="line", max_length=DEMO_MAX_LENGTH)
    explainer = MusicLime(model, apply_softmax=True)
    F = audio.num_features + lyrics.num_features
    drawer = MaskSampler("paired", F, first_row_ones=True, generator=torch.Generator().manual_seed(0))
    masks = drawer.draw(120).masks
    with torch.no_grad():
        y = explainer.forward_masks(masks, audio, lyrics)[:, 1]
        exp = explainer.explain(audio, lyrics, target=[1], n_samples=120, sampler="paired",
                                generator=torch.Generator().manual_seed(0), num_features=20)
    coef, stderr = bench_quality.demo_fit(masks, y, drawer.clusters, explainer.kernel_parameters)
    torch.testing.assert_close(coef.to(torch.float32), exp.coef.reshape(-1), rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(stderr.to(torch.float32), exp.stderr.reshape(-1), rtol=1e-4, atol=1e-6)


def test_harness_runs_quality_only_when_named():
    assert "quality" not in parse_args([]).only
    assert parse_args(["--only", "quality", "--tiny"]).only == ["quality"]


def test_tiny_run_writes_well_formed_results(tmp_path):
    paths = bench_quality.main(["--tiny", "--out", tmp_path])
    names = sorted(p.name for p in paths)
    assert names == ["quality_cpu_tiny.json", "quality_cpu_tiny.md", "quality_kernelshap_cpu_tiny.png",
                     "quality_lime_cpu_tiny.png"]
    assert sorted(p.name for p in tmp_path.iterdir()) == names  # no temp files, no full-run names
    for p in paths:
        assert p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" if p.suffix == ".png" else p.stat().st_size > 0
    data = json.loads((tmp_path / "quality_cpu_tiny.json").read_text())
    assert data["scenario"] == "quality" and data["mode"] == "tiny" and data["device"] == "cpu"
    for key in ("cpu_model", "cpu_count", "torch", "captum", "lime", "load_average_at_start", "load_average_at_end"):
        assert key in data["machine"]
    params = data["parameters"]
    assert params["torch_num_threads"] >= 1 and params["kernel_shap_seeds"] and params["demo_seeds"]

    ks = data["kernel_shap"]
    methods = {"captum", *(f"torchlime_{s}" for s in bench_quality.KS_SAMPLERS)} | (
        {"shap"} if ks["shap"]["measured"] else set())
    cells = {(r["F"], r["n_samples"], r["model"], r["method"]) for r in ks["rows"]}
    assert cells == {(F, n, m, meth) for F in params["kernel_shap_F"] for n in params["kernel_shap_n"]
                     for m in ("mlp", "interactions") for meth in methods}
    assert all(r["mse"] >= 0 for r in ks["rows"])
    for cov in (ks["coverage_95"], data["lime_tabular"]["coverage_95"], data["demo"]["coverage_95"]):
        assert all(v is None or 0.0 <= v <= 1.0 for v in cov.values())

    demo = data["demo"]
    # the reference's own composition and lime's own fit agree with what the curves use
    assert demo["reference_outputs_check"]["max_abs_difference"] < 1e-5
    assert demo["reference_vs_torchlime_fit_max_abs_difference"] < 1e-5
    assert set(demo["curves"]) == {"reference", "torchlime_iid", "torchlime_paired", "torchlime_sobol"}
    for curve in demo["curves"].values():
        assert [p["n_samples"] for p in curve] == params["demo_grid"]
        assert all(p["rel_l2_error_mean"] >= 0 and len(p["rel_l2_error_per_seed"]) == len(params["demo_seeds"])
                   for p in curve)
    assert set(demo["timing"]) == set(demo["curves"]) and all(t["seconds"] > 0 for t in demo["timing"].values())
    (auto,) = demo["auto"]
    assert all(2 <= n <= auto["max_samples"] for n in auto["n_samples_per_seed"])
    assert len(data["targets"]) == 6
    for t in data["targets"]:
        assert {"target", "measured", "threshold", "comparison", "met"} <= t.keys()
