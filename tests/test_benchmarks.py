"""The engine benchmark script runs end to end and writes well-formed JSON (no timing thresholds)."""

import json
import math

from benchmarks.bench_engine import main


def test_bench_engine_writes_json(tmp_path, capsys):
    # --tiny (1 s waveform, n_samples 100) keeps this to ~10 s on a 2-core CPU.
    paths = main(["--quick", "--tiny", "--device", "cpu", "--repeats", "1", "--out", tmp_path])

    assert [p.name for p in paths] == ["engine_cpu_tiny.json"]
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]  # temp file replaced
    data = json.loads(paths[0].read_text())

    assert {"machine", "parameters", "configurations"} <= data.keys()
    for key in ("platform", "processor", "cpu_count", "python", "torch", "captum", "device", "gpu_name"):
        assert key in data["machine"]
    assert data["machine"]["device"] == "cpu"
    assert data["parameters"]["repeats"] == 1
    assert data["parameters"]["perturbations_per_eval"] == 100

    configs = data["configurations"]
    seen = {(c["workload"], c["method"]) for c in configs}
    assert seen == {(w, m) for w in ("waveform", "scalar64") for m in ("lime", "kernel_shap")}
    for c in configs:
        for lib in ("torchlime", "captum"):
            t = c[lib]
            assert t["repeats"] == 1
            assert 0 < t["min_s"] <= t["median_s"] <= t["max_s"]
        assert c["speedup"] > 0
        for key in ("correlation", "correlation_independent_seeds"):
            assert c[key] is None or -1 - 1e-9 <= c[key] <= 1 + 1e-9
        if c["method"] == "lime":
            for key in ("correlation_ridge", "correlation_ridge_independent_seeds"):
                assert c[key] is not None and math.isfinite(c[key])

    table = capsys.readouterr().out
    assert table.startswith("| device | workload |")
    assert table.count("\n| cpu |") == len(configs)
