"""GlobalAggregator over torch.distributed (gloo, 2 CPU processes) equals one process."""

import json

import pytest
import torch.distributed as dist
import torch.multiprocessing as mp

from tests.test_aggregation import AUDIO, make_explanation
from tests.test_aggregation_space import song
from torchlime import GlobalAggregator

# Lines per song; "moon" and "sun" are seen by one rank only when the songs are split 0-2 / 3-5.
# Names with a NUL, a 5,000-digit run and non-ASCII text cross the process boundary intact
# (no zero coefficients: with components="both" the first aggregator keeps every name).
SONGS = [["la la", "thunder", "nul\0line"], ["thunder", "night", "9" * 5000], ["moon", "la la", "\0"],
         ["sun", "déjà vu 🎵"], ["night", "rain", "line 10"], ["rain", "la la", "line 2"]]


def _aggregators():
    return [GlobalAggregator(3, label="explained", components="both"),
            GlobalAggregator(3, AUDIO, feature_types="audio"),
            GlobalAggregator(3, top_k=2)]


def _worker(rank, world, store, out, shards):
    dist.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=world)
    try:
        results = []
        for agg in _aggregators():
            for s in shards[rank]:
                agg.update(make_explanation(s, SONGS[s], zero_frac=0.0))
            results.append(agg.compute().to_dict())
        # Each process alone sees one feature space; together they see two (4 and 2 segments).
        mixed = GlobalAggregator(3)
        mixed.update(song(f"rank{rank}", segments=4 if rank == 0 else 2))
        try:
            mixed.compute()
            results.append("no error")
        except ValueError as err:
            results.append(str(err))
        with open(f"{out}.{rank}", "w") as f:
            json.dump(results, f)
    finally:
        dist.destroy_process_group()


@pytest.mark.parametrize("shards", [[[0, 2, 4], [1, 3, 5]], [[0, 1, 2, 3, 4, 5], []]], ids=["split", "one-rank-empty"])
def test_two_processes_equal_one(tmp_path, shards):
    out = tmp_path / "result"
    mp.spawn(_worker, args=(2, str(tmp_path / "store"), str(out), shards), nprocs=2, join=True)
    single = []
    for agg in _aggregators():
        agg.update([make_explanation(s, SONGS[s], zero_frac=0.0) for s in range(len(SONGS))])
        single.append(agg.compute().to_dict())
    for rank in range(2):
        got = json.loads((tmp_path / f"result.{rank}").read_text())
        for a, b in zip(got, single):
            assert a["feature_names"] == b["feature_names"]
            assert a["counts"] == b["counts"]
            assert a["support"] == b["support"]
            for kind in ("weight_sums", "lime", "average", "homogeneity"):
                for cls in b[kind]:
                    assert a[kind][cls] == pytest.approx(b[kind][cls], rel=1e-12)
        assert "song 'rank1' (rank1.wav) is over another feature space" in got[-1]
        assert "expected 8 audio features" in got[-1] and "(as in song 'rank0' (rank0.wav))" in got[-1]
    names = single[0]["feature_names"]
    assert {"moon", "sun", "nul\0line", "\0", "9" * 5000, "déjà vu 🎵"} <= set(names)
    assert names.index("line 2") < names.index("line 10")
