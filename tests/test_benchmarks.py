"""The benchmark harness runs end to end and writes well-formed results (no timing thresholds).

One ``--tiny`` run of every scenario on the CPU (about 25 s on a 2-core machine), shared
by the tests below through a module fixture.
"""

import json
import math

import pytest

for _module in ("captum", "lime", "sklearn", "openunmix", "torchaudio", "transformers", "matplotlib"):
    pytest.importorskip(_module)

from benchmarks.__main__ import SCENARIOS, main  # noqa: E402

MACHINE_KEYS = ("platform", "processor", "cpu_count", "python", "torch", "captum", "torchlime", "device", "gpu_name")


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    out = tmp_path_factory.mktemp("bench")
    paths = main(["--tiny", "--device", "cpu", "--out", out])
    return out, paths


def _load(out, scenario):
    return json.loads((out / f"{scenario}_cpu_tiny.json").read_text())


def _is_summary(s):
    return 0 < s["min_s"] <= s["q1_s"] <= s["median_s"] <= s["q3_s"] <= s["max_s"] and s["repeats"] >= 1 \
        and math.isclose(s["iqr_s"], s["q3_s"] - s["q1_s"])


def test_writes_every_scenario_and_nothing_else(run):
    out, paths = run
    names = sorted(p.name for p in paths)
    expected = sorted([f"{s}_cpu_tiny.json" for s in SCENARIOS]
                      + ["summary_cpu_tiny.md", "growth_cpu_tiny.png", "many_songs_cpu_tiny.png"])
    assert names == expected
    assert sorted(p.name for p in out.iterdir()) == expected  # no temp files left, no full-run names
    for p in paths:
        assert p.stat().st_size > 0
    assert (out / "growth_cpu_tiny.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_common_fields(run):
    out, _ = run
    for scenario in SCENARIOS:
        data = _load(out, scenario)
        assert data["scenario"] == scenario
        assert data["mode"] == "tiny" and data["device"] == "cpu" and data["schema_version"] == 1
        for key in MACHINE_KEYS:
            assert key in data["machine"], (scenario, key)
        assert data["machine"]["device"] == "cpu" and data["machine"]["gpu_name"] is None
        assert isinstance(data["parameters"], dict) and "timing" in data["parameters"]
        assert data["total_wall_s"] > 0
        for t in data["targets"]:
            assert {"target", "measured", "threshold", "comparison", "met"} <= t.keys()


def test_engine(run):
    data = _load(run[0], "engine")
    assert data["parameters"]["perturbations_per_eval"] == 100
    configs = data["configurations"]
    assert {(c["workload"], c["method"]) for c in configs} == {
        (w, m) for w in ("waveform", "scalar64") for m in ("lime", "kernel_shap")}
    for c in configs:
        for side in ("torchlime", "captum", "model_forward"):
            assert _is_summary(c[side])
        assert c["speedup"] > 0
        for key in ("correlation", "correlation_independent_seeds"):
            assert c[key] is None or -1 - 1e-9 <= c[key] <= 1 + 1e-9
        if c["method"] == "lime":
            assert c["correlation_ridge"] is not None and math.isfinite(c["correlation_ridge"])


def test_music(run):
    data = _load(run[0], "music")
    assert data["parameters"]["separator"]["architecture"] == "tiny"
    (row,) = data["rows"]
    for side in ("torchlime", "reference"):
        assert _is_summary(row[side]["explain"]) and _is_summary(row[side]["separation"])
        phases = row[side]["breakdown_median_s"]
        assert set(phases) == {"separation", "setup", "composition", "tokenization", "features", "model forward",
                               "kernel", "fit", "other"}
        assert phases["model forward"] > 0
        assert 0 <= row[side]["explainer_share"] <= 1
    assert row["same_features_same_order"] is True  # same masks, same model: same explanation
    assert row["max_abs_weight_difference"] < 1e-4


def test_many_songs(run):
    data = _load(run[0], "many_songs")
    assert isinstance(data["batched_songs_supported"], bool)
    assert [r["songs_per_call"] for r in data["rows"]] == data["parameters"]["songs_per_call"]
    for r in data["rows"]:
        for side in ("batched", "looped"):
            assert _is_summary(r[side]) and r[side]["explanations_per_s"] > 0
            assert r[side]["explanations"] == r["songs_per_call"]


def test_growth(run):
    data = _load(run[0], "growth")
    assert {p["sweep"] for p in data["points"]} == {"n_samples", "seconds", "features"}
    for p in data["points"]:
        assert "error" not in p, p.get("error")
        assert _is_summary(p["time"])
        assert p["peak_bytes"] >= 0 and p["peak_method"]
        assert p["chunk_bytes"] == min(p["batch_size"], p["n_samples"]) * p["audio_samples"] * 4


def test_limit(run):
    data = _load(run[0], "limit")
    assert data["copy_bandwidth"]["bytes_per_s"] > 0
    for c in data["composition"]:
        assert c["bytes_per_s"] > 0 and c["fraction_of_copy_bandwidth"] > 0
        assert c["inplace_probe"]["same_output"] is True
        assert c["bmm_probe"] is None or c["bmm_probe"]["same_output"] is True
    assert data["explainer_share"]["rows"]


def test_summary_markdown(run):
    text = (run[0] / "summary_cpu_tiny.md").read_text()
    assert text.startswith("# torchlime benchmarks: cpu (tiny)")
    assert "| target | measured | goal | met |" in text
    for scenario in SCENARIOS:
        assert scenario in text
    assert "![growth](growth_cpu_tiny.png)" in text


def test_bad_options_are_rejected(capsys):
    with pytest.raises(SystemExit):
        main(["--only", "nope", "--tiny"])
    assert "expected --only among" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["--quick", "--tiny"])


def test_compat(run):
    data = _load(run[0], "compat")
    assert {r["mode"] for r in data["single"]} == {"none", "highest_weights", "forward_selection", "lasso_path", "auto"}
    for r in data["single"]:
        assert _is_summary(r["lime"]) and _is_summary(r["compat"]) and r["speedup"] > 0
        assert r["same_features_same_order"] is True  # same neighbourhood: lime's explanation
        assert r["max_abs_weight_difference"] < 1e-8
    for r in data["batch"]:
        for side in ("lime_loop", "compat_loop", "compat_batched"):
            assert _is_summary(r[side]) and r[side]["explanations_per_s"] > 0
        assert r["same_features_same_order"] == r["problems"] == r["B"] * len(r["labels"])
    assert [t["target"] for t in data["targets"]] == ["compat vs lime, one problem", "compat batched vs a lime loop"]
