"""The benchmark harness runs end to end and writes well-formed results (no timing thresholds).

One ``--tiny`` run of every scenario on the CPU (about 30 s on a 2-core machine), shared
by the tests below through a module fixture; one ``--only`` rerun into a copy of its folder
(the summary keeps the other scenarios); one ``--compare-to`` of this checkout with itself
(the operator counts of the same code agree exactly); the package's import graph has no cycle.
"""

import ast
import json
import math
import shutil
from pathlib import Path

import pytest

for _module in ("captum", "lime", "sklearn", "openunmix", "torchaudio", "transformers", "matplotlib"):
    pytest.importorskip(_module)

from benchmarks.__main__ import DEFAULT, main  # noqa: E402
from benchmarks.__main__ import SCENARIOS as ALL  # noqa: E402
from benchmarks._compare import metrics  # noqa: E402

SCENARIOS = {s: ALL[s] for s in DEFAULT}  # what a run without --only writes

BENCHMARKS = Path(__file__).resolve().parent.parent / "benchmarks"

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
    plotted = [s for s, m in SCENARIOS.items() if callable(getattr(m, "plot", None))]
    assert {"growth", "many_songs"} <= set(plotted)
    expected = sorted([f"{s}_cpu_tiny.json" for s in SCENARIOS] + ["summary_cpu_tiny.md"]
                      + [f"{s}_cpu_tiny.png" for s in plotted])
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
        assert data["mode"] == "tiny" and data["device"] == "cpu" and data["schema_version"] == 2
        for key in MACHINE_KEYS:
            assert key in data["machine"], (scenario, key)
        assert data["machine"]["device"] == "cpu" and data["machine"]["gpu_name"] is None
        assert data["machine"]["torch_num_threads"] >= 1 and "thread_env" in data["machine"]
        assert Path(data["machine"]["torchlime_checkout"]["path"]) == BENCHMARKS.parent
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
        # Operator counts by the engine's ranges: the model (1 forward call of 100 rows) is one matmul.
        per_phase = c["ops"]["per_phase"]
        assert {"transform", "model", "fit", "other"} <= set(per_phase)
        assert per_phase["model"]["ops"] >= 1 and per_phase["model"]["kernels"] == 1
        assert per_phase["fit"]["ops"] > 0 and per_phase["fit"]["kernels"] > 0
        assert c["ops"]["total"]["ops"] == sum(p["ops"] for p in per_phase.values())


def test_music(run):
    data = _load(run[0], "music")
    assert data["parameters"]["separator"]["architecture"] == "tiny"
    (row,) = data["rows"]
    assert _is_summary(row["setup"])
    for side in ("torchlime", "reference"):
        assert _is_summary(row[side]["explain"]) and _is_summary(row[side]["separation"])
        phases = row[side]["breakdown_s"]
        assert set(phases) == {"separation", "setup", "composition", "tokenization", "features", "model forward",
                               "kernel", "fit", "other"}
        assert phases["model forward"] > 0 and phases["composition"] > 0 and phases["fit"] > 0
        assert 0 <= row[side]["explainer_share"] <= 1
    # The phases come from the profiler's ranges: the engine's kernel and fit ran (no patching needed).
    per_phase = row["torchlime"]["ops"]["per_phase"]
    for phase in ("composition", "tokenization", "model", "kernel", "fit"):
        assert per_phase[phase]["ops"] > 0, phase
    assert "setup" not in per_phase and row["torchlime"]["profile"]["phases"]["setup"]["ranges"] == 1
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
            assert r[side]["ops"]["ops"] > 0 and r[side]["ops_by_phase"]["model"] > 0
    first = data["rows"][0]
    assert first["songs_per_call"] == 1 and first["batched"]["ops"] == first["looped"]["ops"]  # the same call


def test_growth(run):
    data = _load(run[0], "growth")
    assert {p["sweep"] for p in data["points"]} == {"n_samples", "seconds", "features", "lime_n", "song_minutes"}
    for p in data["points"]:
        assert "error" not in p and "skipped" not in p, p
        assert _is_summary(p["time"])
        assert p["peak_bytes"] >= 0 and p["peak_method"]
        if p["sweep"] in ("n_samples", "seconds", "features", "song_minutes"):
            assert p["chunk_bytes"] == min(p["batch_size"], p["n_samples"]) * p["audio_samples"] * 4
    (lime,) = [p for p in data["points"] if p["sweep"] == "lime_n"]
    assert lime["features"] == 8 and lime["mask_entries"] == 8 * lime["n_samples"]
    assert lime["peak_alloc_bytes"] > 0 and lime["fit_ops"]["ops"] > 0
    (song,) = [p for p in data["points"] if p["sweep"] == "song_minutes"]
    assert song["memory_budget"] == 256 << 20 and song["memory_budget_supported"] is True
    assert song["bound_bytes"] == song["stems_bytes"] + song["memory_budget"]
    assert song["peak_total_bytes"] >= 0 and song["peak_alloc_bytes"] > 0
    assert song["samples_per_call"] == song["batch_size"]  # a 6 s song: the 256 MB budget is no limit
    assert data["song_memory"]["checked"] is True


def test_growth_skips_what_would_not_fit():
    from benchmarks.bench_growth import SKIP_SHARE, predicted_bytes

    spec = {"sweep": "lime_n", "features": 8, "n_samples": 10**7}
    assert predicted_bytes(spec, None) == 48 * 8 * 10**7
    done = {"sweep": "lime_n", "n_samples": 10**6, "peak_bytes": 1 << 29, "peak_total_bytes": 1 << 30}
    assert predicted_bytes(spec, done) == 10 << 30  # the previous peak, scaled with n, when that is more
    assert 0 < SKIP_SHARE < 1


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
        assert f"| {scenario} | " in text  # its run is listed
    assert "![growth](growth_cpu_tiny.png)" in text
    assert "torch threads" in text and "load average" in text


def test_only_merges_into_the_summary(run, tmp_path):
    out = tmp_path / "out"
    shutil.copytree(run[0], out)
    before = {s: _load(out, s)["created_utc"] for s in SCENARIOS}
    paths = main(["--tiny", "--device", "cpu", "--only", "limit", "--out", out])
    assert sorted(p.name for p in paths) == ["limit_cpu_tiny.json", "summary_cpu_tiny.md"]
    text = (out / "summary_cpu_tiny.md").read_text()
    for scenario in SCENARIOS:  # every scenario's table is still there, the others marked as earlier runs
        assert f"| {scenario}{'' if scenario == 'limit' else ' (earlier run)'} | " in text
        if scenario != "limit":
            assert _load(out, scenario)["created_utc"] == before[scenario]
    assert "## 4. Cost growth" in text and "![growth](growth_cpu_tiny.png)" in text


def test_metrics_name_every_number_once(run):
    for scenario in SCENARIOS:
        data = _load(run[0], scenario)
        found = metrics(data)
        assert found, scenario
        assert all(m["unit"] in ("s", "count", "bytes") and m["kind"] in ("torchlime", "reference")
                   for m in found.values())
    engine = metrics(_load(run[0], "engine"))
    label = "configurations[workload=waveform,method=lime,n_samples=100]"
    assert engine[label + "/torchlime"]["kind"] == "torchlime"
    assert engine[label + "/captum"]["kind"] == "reference"
    assert engine[label + "/ops/per_phase/fit/ops"]["unit"] == "count"


def test_compare_to_the_same_checkout(tmp_path):
    paths = main(["--tiny", "--device", "cpu", "--only", "engine", "--repeats", "1", "--rounds", "1",
                  "--compare-to", BENCHMARKS.parent, "--out", tmp_path])
    assert sorted(p.name for p in paths) == ["compare_cpu_tiny.json", "compare_cpu_tiny.md"]
    data = json.loads((tmp_path / "compare_cpu_tiny.json").read_text())
    assert not data["errors"] and [r["side"] for r in data["runs"]] == ["current", "other"]
    for side in ("current", "other"):
        assert Path(data["sides"][side]["checkout"]["path"]) == BENCHMARKS.parent
    found = data["scenarios"]["engine"]
    # The same code makes the same operator calls in the model and the fit. (Lime's transform
    # skips its contiguous-runs scan when the feature mask sits where the last one did, which
    # depends on the allocator: its counts may differ between two processes.)
    fixed = {k: m for k, m in found.items() if m["unit"] == "count" and ("/model/" in k or "/fit/" in k)}
    assert len(fixed) == 16 and all(m["ratio"] == 1.0 for m in fixed.values() if m["other_median"])
    assert all(m["ratio"] > 0 for m in found.values() if m["unit"] == "s")
    assert "| metric | other | current | ratio | paired |" in (tmp_path / "compare_cpu_tiny.md").read_text()


def test_import_graph_has_no_cycle():
    """Modules of ``benchmarks`` import downwards only (checked on the source, every import form)."""
    package = BENCHMARKS.name
    modules = {p.stem: p for p in BENCHMARKS.glob("*.py")}
    graph = {}
    for name, path in modules.items():
        deps = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level == 0 and not base.startswith(package):
                    continue
                base = base[len(package):].lstrip(".") if node.level == 0 else base
                if base:
                    deps.add(base.split(".")[0])
                else:
                    deps.update(a.name for a in node.names)
            elif isinstance(node, ast.Import):
                deps.update(a.name.split(".")[1] for a in node.names if a.name.startswith(package + "."))
        graph[name] = {d for d in deps if d in modules and d != name}
    assert graph["__main__"] >= {"bench_engine", "bench_music", "_harness"}
    done, stack = set(), []

    def visit(node):
        assert node not in stack, f"import cycle: {' -> '.join(stack[stack.index(node):] + [node])}"
        if node in done:
            return
        stack.append(node)
        for dep in sorted(graph[node]):
            visit(dep)
        stack.pop()
        done.add(node)

    for name in sorted(graph):
        visit(name)


def test_bad_options_are_rejected(capsys, tmp_path):
    with pytest.raises(SystemExit):
        main(["--only", "nope", "--tiny"])
    assert "expected --only among" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["--quick", "--tiny"])
    with pytest.raises(SystemExit):
        main(["--tiny", "--compare-to", tmp_path])
    assert "expected --compare-to to be a checkout holding torchlime/__init__.py" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["--tiny", "--rounds", "0", "--compare-to", BENCHMARKS.parent])
    assert "expected --rounds >= 1, got 0" in capsys.readouterr().err


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


def test_proxies_count_the_lime_fit():
    from benchmarks.proxies import explainer_ops, lime_fit_ops

    ops = lime_fit_ops(n_samples=64, num_features=4, perturbations_per_eval=32)
    assert {"transform", "model", "fit", "other", "total"} <= set(ops)
    assert ops["model"]["ops"] >= 2 and ops["model"]["kernels"] == 2  # two forward calls: one matmul each
    assert ops["fit"]["kernels"] > 0
    assert ops["total"]["ops"] == sum(v["ops"] for k, v in ops.items() if k != "total")
    with pytest.raises(ValueError, match="expected method 'lime' or 'kernel_shap', got 'shap'"):
        explainer_ops("shap")
