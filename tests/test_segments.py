"""Stems x segments (functional.segments): one compose_segments with an in-place and a
shape-static path, one boundary check, one home for the feature names; integer PCM scaled
as soundfile reads it (functional.audio)."""

import numpy as np
import pytest
import torch

from torchlime import functional as TF
from torchlime.functional.segments import check_boundaries, feature_stem_segment, segment_layout
from torchlime.music import MusicLime, StemFactorization
from torchlime.training import ExplainStep, ExplanationMonitor, StemsTransform, stem_features

cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")

# (T, boundaries): one run of equal segments tiling the song; runs of two lengths; gaps
# before, between and after the segments.
LAYOUTS = {
    "even": (120, TF.even_boundaries(120, 4)),
    "uneven": (103, TF.even_boundaries(103, 7)),
    "gaps": (103, [(5, 30), (40, 65), (65, 90)]),
}


def reference(stems, masks, boundaries, residual=None):
    """Per sample, per switched-on feature: add the stem's samples of that segment (numpy)."""
    stems, masks = np.asarray(stems), np.asarray(masks)
    S, C, T = stems.shape
    out = np.zeros((masks.shape[0], C, T)) + (0 if residual is None else np.asarray(residual))
    for i, row in enumerate(masks):
        for f in np.flatnonzero(row):
            g, s = divmod(f, S)
            a, b = boundaries[g]
            out[i, :, a:b] += stems[s, :, a:b]
    return out


def _inputs(T, G, lead=(), C=2, n=6, seed=0, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    stems = torch.randn(*lead, 4, C, T, generator=g, dtype=dtype)
    masks = torch.bernoulli(torch.full((*lead, n, 4 * G), 0.5, dtype=dtype), generator=g)
    residual = torch.randn(*lead, C, T, generator=g, dtype=dtype)
    return stems, masks, residual


@pytest.mark.parametrize("layout", list(LAYOUTS))
@pytest.mark.parametrize("channels", [1, 2])
@pytest.mark.parametrize("with_residual", [False, True])
def test_compose_equals_numpy_reference(layout, channels, with_residual):
    T, bounds = LAYOUTS[layout]
    stems, masks, residual = _inputs(T, len(bounds), C=channels)
    residual = residual if with_residual else None
    out = TF.compose_segments(stems, masks, bounds, residual)
    expected = reference(stems, masks, bounds, None if residual is None else residual)
    np.testing.assert_allclose(out.numpy(), expected, atol=1e-12, rtol=0)


@pytest.mark.parametrize("layout", list(LAYOUTS))
@pytest.mark.parametrize("B", [1, 3])
@pytest.mark.parametrize("traced", [False, True])
def test_batch_equals_loop(layout, B, traced):
    """B songs in one call equal B single-song calls, on either path."""
    T, bounds = LAYOUTS[layout]
    stems, masks, residual = _inputs(T, len(bounds), lead=(B,))
    if traced:
        stems.requires_grad_(True)
    batch = TF.compose_segments(stems, masks, bounds, residual)
    for b in range(B):
        torch.testing.assert_close(batch[b], TF.compose_segments(stems[b], masks[b], bounds, residual[b]),
                                   atol=0, rtol=0)


def test_leading_dims_broadcast():
    """One song's stems with masks for 2 x 3 instances, and the reverse, equal the loop."""
    T, bounds = LAYOUTS["uneven"]
    stems, masks, residual = _inputs(T, len(bounds), lead=(2, 3))
    out = TF.compose_segments(stems[0, 0], masks, bounds)
    assert out.shape == (2, 3, 6, 2, T)
    for i in range(2):
        for j in range(3):
            torch.testing.assert_close(out[i, j], TF.compose_segments(stems[0, 0], masks[i, j], bounds), atol=0, rtol=0)
    out = TF.compose_segments(stems, masks[0, 0], bounds, residual[0, 0])
    for i in range(2):
        for j in range(3):
            torch.testing.assert_close(out[i, j], TF.compose_segments(stems[i, j], masks[0, 0], bounds, residual[0, 0]),
                                       atol=0, rtol=0)


@pytest.mark.parametrize("layout", list(LAYOUTS))
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_in_place_path_equals_shape_static_path(layout, dtype):
    T, bounds = LAYOUTS[layout]
    stems, masks, residual = _inputs(T, len(bounds), lead=(2,), dtype=dtype)
    fast = TF.compose_segments(stems, masks, bounds, residual)
    traced = TF.compose_segments(stems.clone().requires_grad_(True), masks, bounds, residual)
    assert traced.grad_fn is not None and fast.grad_fn is None
    # 0/1 masks: the same sums of at most S products, in another summation order
    tol = 1e-6 if dtype == torch.float32 else 1e-14
    torch.testing.assert_close(traced.detach(), fast, atol=tol, rtol=tol)
    buf = torch.full_like(fast, 7.0)  # stale data must not survive, on either path
    assert TF.compose_segments(stems, masks, bounds, residual, out=buf) is buf
    torch.testing.assert_close(buf, fast, atol=0, rtol=0)
    buf.fill_(7.0)
    TF.compose_segments(stems.clone().requires_grad_(True), masks, bounds, residual, out=buf)
    torch.testing.assert_close(buf.detach(), fast, atol=tol, rtol=tol)


def test_gradcheck():
    T, bounds = LAYOUTS["gaps"]
    stems, masks, residual = _inputs(T, len(bounds), C=1, n=3)
    soft = torch.rand(masks.shape, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    args = (stems.requires_grad_(True), soft.requires_grad_(True), residual.requires_grad_(True))
    assert torch.autograd.gradcheck(lambda x, z, r: TF.compose_segments(x, z, bounds, r), args)


def test_stems_transform_compiles_fullgraph_and_equals_eager():
    torch._dynamo.reset()
    t = StemsTransform(["vocals", "drums", "bass", "other"], num_segments=5)
    stems = torch.randn(3, 4, 2, 103)
    masks = torch.bernoulli(torch.full((3, 4, 20), 0.5), generator=torch.Generator().manual_seed(0))
    ids = torch.arange(6).reshape(3, 2)
    compiled = torch.compile(t, fullgraph=True, backend="aot_eager")
    eager = t(masks, (stems, ids))
    for a, b in zip(compiled(masks, (stems, ids)), eager):
        torch.testing.assert_close(a, b, atol=1e-6, rtol=1e-6)
    bounds = TF.even_boundaries(103, 5)
    for b in range(3):
        np.testing.assert_allclose(eager[0][4 * b : 4 * (b + 1)].numpy(), reference(stems[b], masks[b], bounds),
                                   atol=1e-6, rtol=0)


def test_explain_step_with_stems_transform_compiles_fullgraph():
    torch._dynamo.reset()
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Conv1d(1, 4, 9, stride=4), torch.nn.ReLU(), torch.nn.AdaptiveAvgPool1d(1),
                              torch.nn.Flatten(), torch.nn.Linear(4, 2))
    transform = StemsTransform(["vocals", "drums", "bass", "other"], num_segments=5)
    step = ExplainStep(net, transform, num_features=20, n_samples=32, differentiable=True)
    stems = torch.randn(2, 4, 1, 400)
    masks = step.draw(2, generator=torch.Generator().manual_seed(0))
    eager = step((stems,), masks)
    out = torch.compile(step, fullgraph=True, backend="aot_eager")((stems,), masks)
    torch.testing.assert_close(out.coef, eager.coef, atol=1e-5, rtol=1e-4)


@cuda
def test_cuda_equals_cpu():
    T, bounds = LAYOUTS["uneven"]
    stems, masks, residual = _inputs(T, len(bounds), lead=(2,), dtype=torch.float32)
    cpu = TF.compose_segments(stems, masks, bounds, residual)
    gpu = TF.compose_segments(stems.cuda(), masks.cuda(), bounds, residual.cuda())
    torch.testing.assert_close(gpu.cpu(), cpu, atol=1e-5, rtol=1e-5)


def test_compose_errors():
    stems = torch.zeros(4, 1, 10)
    with pytest.raises(ValueError, match=r"expected stems of shape \(\.\.\., S, C, T\), got shape \(4, 10\)"):
        TF.compose_segments(torch.zeros(4, 10), torch.ones(3, 4), [(0, 10)])
    with pytest.raises(TypeError, match="expected floating-point stems, got torch.int16 .*pcm_to_float"):
        TF.compose_segments(stems.to(torch.int16), torch.ones(3, 4), [(0, 10)])
    with pytest.raises(ValueError, match=r"expected masks of shape \(\.\.\., n, 8\) for 4 stems x 2 segments, got shape \(3, 6\)"):
        TF.compose_segments(stems, torch.ones(3, 6), [(0, 5), (5, 10)])
    with pytest.raises(ValueError, match=r"expected residual of shape \(\.\.\., 1, 10\), got shape \(2, 10\)"):
        TF.compose_segments(stems, torch.ones(3, 4), [(0, 10)], torch.zeros(2, 10))
    with pytest.raises(ValueError, match=r"expected the leading dims of stems \(2,\), masks \(3,\) to broadcast"):
        TF.compose_segments(torch.zeros(2, 4, 1, 10), torch.ones(3, 5, 4), [(0, 10)])
    with pytest.raises(ValueError, match=r"expected out as a contiguous \(3, 1, 10\) torch.float32 tensor on cpu, "
                       r"got \(3, 1, 10\) torch.float64 on cpu"):
        TF.compose_segments(stems, torch.ones(3, 4), [(0, 10)], out=torch.zeros(3, 1, 10, dtype=torch.float64))
    with pytest.raises(ValueError, match=r"expected out as a contiguous \(3, 2, 10\) torch.float32 tensor on cpu, "
                       r"got \(3, 2, 10\) torch.float32 on cpu, not contiguous"):
        TF.compose_segments(torch.zeros(4, 2, 10), torch.ones(3, 4), [(0, 10)], out=torch.zeros(3, 10, 2).transpose(1, 2))


def test_boundary_errors():
    with pytest.raises(ValueError, match=r"expected segment 1 as 5 <= start < end <= 10 \(increasing, non-overlapping\), got \(3, 10\)"):
        check_boundaries([(0, 5), (3, 10)], 10)
    with pytest.raises(ValueError, match=r"expected segment 0 as 0 <= start < end <= 10 .*got \(4, 4\)"):
        check_boundaries([(4, 4)], 10)
    with pytest.raises(ValueError, match=r"expected segment 1 as 5 <= start < end <= 10 .*got \(5, 11\)"):
        check_boundaries([(0, 5), (5, 11)], 10)
    with pytest.raises(ValueError, match=r"expected segment 0 as a \(start, end\) pair of integers, got \(True, 3\)"):
        check_boundaries([(True, 3)], 10)
    with pytest.raises(ValueError, match=r"expected segment 0 as a \(start, end\) pair of integers, got \(0, 1, 2\)"):
        check_boundaries([(0, 1, 2)], 10)
    with pytest.raises(ValueError, match="expected at least one segment, got no boundaries"):
        check_boundaries([], 10)
    with pytest.raises(ValueError, match="expected boundaries as a sequence of .start, end. pairs, got str"):
        check_boundaries("0-10", 10)
    assert check_boundaries([(np.int64(0), np.int64(5))], 10) == [(0, 5)]
    with pytest.raises(ValueError, match="expected num_segments >= 1, got 0"):
        TF.even_boundaries(10, 0)
    with pytest.raises(ValueError, match=r"expected audio of at least 11 samples \(one per segment\), got 10"):
        TF.even_boundaries(10, 11)


# -- feature names --------------------------------------------------------------------------------


def test_feature_names_built_once_and_read_back_by_index():
    stems = ["vocals", "drums", "bass", "other"]
    names = TF.segment_feature_names(stems, 3)
    fac = StemFactorization(torch.randn(4, 1, 90), sample_rate=10, num_segments=3)
    assert fac.feature_names == names == StemsTransform(stems, num_segments=3).feature_names
    for j, name in enumerate(names):
        s, g = feature_stem_segment(j, 4)
        assert name == f"{stems[s]}_T{g}"  # the documented format, <stem>_T<g>
        assert fac.feature_stem_segment(j) == (stems[s], g)
    assert segment_layout(names + ["a lyric line", "drums_T0"]) == (stems, 3)
    assert segment_layout(["a lyric line", *names]) == ([], 0)
    assert segment_layout(["x_T0", "y_T1"]) == (["x"], 1)


def test_stem_features_from_a_factorization_or_names():
    fac = StemFactorization(torch.randn(4, 1, 90), sample_rate=10, num_segments=3)
    names = fac.feature_names
    expected = torch.tensor([n.split("_T")[0] == "drums" for n in names])
    assert torch.equal(stem_features(fac, "drums"), expected)
    assert torch.equal(stem_features(StemsTransform(fac.stem_names, 3), "drums"), expected)
    assert torch.equal(stem_features(names, "drums"), expected)
    # names after the stems x segments ones (lyric lines) never match, even if they look alike
    mixed = stem_features(names + ["drums_T7 is a lyric line", "drums_T0"], "drums")
    assert torch.equal(mixed, torch.cat([expected, torch.tensor([False, False])]))
    with pytest.raises(ValueError, match=r"expected stems among those of the feature names \[\], got \['drums'\]"):
        stem_features(["a", "b"], "drums")


def test_monitor_groups_stems_by_index():
    net = torch.nn.Linear(6, 2)
    step = ExplainStep(net, lambda z, x: (z * x.unsqueeze(1)).flatten(0, 1), num_features=6, n_samples=16)
    names = TF.segment_feature_names(["drums", "other"], 3)
    monitor = ExplanationMonitor(step, torch.randn(4, 6), feature_names=names, num_classes=2, groups="stems")
    assert monitor.groups == {"drums": [0, 2, 4], "other": [1, 3, 5]}


def test_segment_times():
    fac = StemFactorization(torch.randn(4, 1, 1001), sample_rate=100, boundaries=[(0, 250), (300, 1001)])
    assert fac.segment_times == [(a / 100, b / 100) for a, b in fac.boundaries] == [(0.0, 2.5), (3.0, 10.01)]


# -- integer PCM ----------------------------------------------------------------------------------


@pytest.mark.parametrize(("subtype", "dtype"), [("PCM_16", torch.int16), ("PCM_32", torch.int32),
                                                ("PCM_U8", torch.uint8), ("PCM_S8", torch.int8)])
def test_pcm_to_float_equals_soundfile(tmp_path, subtype, dtype):
    """The same PCM samples: scaled by pcm_to_float, and read back as float32 by soundfile."""
    sf = pytest.importorskip("soundfile")
    g = np.random.default_rng(0)
    info = torch.iinfo(dtype)
    pcm = g.integers(info.min, info.max, size=(1000, 2), endpoint=True)
    pcm[:4, 0] = [info.min, info.max, 0, (info.min + info.max) // 2]
    # soundfile writes from int16/int32 arrays: 8-bit PCM as the top byte of an int16
    if dtype in (torch.uint8, torch.int8):
        written = ((pcm - (128 if dtype == torch.uint8 else 0)) * 256).astype(np.int16)
    else:
        written = pcm.astype(np.int16 if dtype == torch.int16 else np.int32)
    path = tmp_path / ("x.aiff" if subtype == "PCM_S8" else "x.wav")  # WAV has no signed 8-bit PCM
    sf.write(path, written, 8000, subtype=subtype)
    read, _ = sf.read(path, dtype="float32", always_2d=True)
    ours = TF.pcm_to_float(torch.from_numpy(pcm.T.copy()).to(dtype))
    assert ours.dtype == torch.float32
    np.testing.assert_array_equal(ours.numpy(), read.T)


def test_stem_factorization_scales_integer_pcm(tmp_path):
    sf = pytest.importorskip("soundfile")
    g = torch.Generator().manual_seed(0)
    pcm = (torch.randn(4, 1, 800, generator=g) * 0.3 * 32767).clamp(-32768, 32767).to(torch.int16)
    path = tmp_path / "stems.wav"
    sf.write(path, pcm[:, 0].T.numpy(), 8000, subtype="PCM_16")
    read = torch.from_numpy(sf.read(path, dtype="float32")[0].T.copy()).unsqueeze(1)
    fac = StemFactorization(pcm, sample_rate=8000, num_segments=4, mixture=pcm.sum(0, dtype=torch.int16),
                            keep_residual=True)
    assert fac.stems.dtype == torch.float32 and float(fac.stems.abs().max()) <= 1.0
    torch.testing.assert_close(fac.stems, read, atol=0, rtol=0)
    torch.testing.assert_close(fac.mixture, TF.pcm_to_float(pcm.sum(0, dtype=torch.int16)), atol=0, rtol=0)
    t = StemsTransform(fac.stem_names, num_segments=4)
    masks = torch.bernoulli(torch.full((1, 3, 16), 0.5), generator=g)
    torch.testing.assert_close(t(masks, pcm.unsqueeze(0))[0], TF.compose_segments(read, masks[0], fac.boundaries))


def test_pcm_errors():
    with pytest.raises(TypeError, match=r"expected floating-point audio or integer PCM \(uint8, int8, int16, int32\), got torch.int64"):
        TF.pcm_to_float(torch.zeros(3, dtype=torch.int64))
    with pytest.raises(TypeError, match="expected audio as a torch.Tensor, got list"):
        TF.pcm_to_float([1, 2])
    with pytest.raises(TypeError, match="expected a floating-point dtype to scale PCM to, got torch.int32"):
        TF.pcm_to_float(torch.zeros(3, dtype=torch.int16), torch.int32)
    x = torch.randn(3, dtype=torch.float64)
    assert TF.pcm_to_float(x) is x
    with pytest.raises(TypeError, match=r"StemFactorization stems: expected floating-point audio or integer PCM .*got torch.bool"):
        StemFactorization(torch.ones(4, 1, 100, dtype=torch.bool), sample_rate=8000)
    with pytest.raises(TypeError, match=r"StemFactorization mixture: expected floating-point audio or integer PCM .*got torch.int64"):
        StemFactorization(torch.randn(4, 1, 100), sample_rate=8000, mixture=torch.zeros(1, 100, dtype=torch.int64),
                          keep_residual=True)


def test_one_sample_audio_is_a_clear_error():
    with pytest.raises(ValueError, match=r"expected audio of at least 2 samples, got stems of shape \(4, 1, 1\)"):
        StemFactorization(torch.randn(4, 1, 1), sample_rate=8000, num_segments=1)
    with pytest.raises(ValueError, match=r"expected audio of at least 2 samples, got stems of shape \(4, 1, 1\)"):
        MusicLime(lambda a: a.mean((1, 2)).unsqueeze(1)).explain(
            StemFactorization(torch.randn(4, 1, 1), sample_rate=8000, num_segments=1), n_samples=8, modality="audio")


@pytest.mark.parametrize(("subtype", "suffix"), [("PCM_16", "wav"), ("PCM_24", "wav"), ("PCM_32", "wav"),
                                                 ("PCM_U8", "wav"), ("PCM_S8", "aiff"), ("FLOAT", "wav"),
                                                 ("PCM_16", "flac")])
def test_read_audio_equals_soundfile_float_read(tmp_path, subtype, suffix):
    sf = pytest.importorskip("soundfile")
    from torchlime.music import read_audio

    data = np.random.default_rng(1).uniform(-1, 1, size=(500, 2)).astype(np.float32)
    path = tmp_path / f"x.{suffix}"
    sf.write(path, data, 8000, subtype=subtype)
    expected, rate = sf.read(path, dtype="float32", always_2d=True)
    ours, ours_rate = read_audio(path)
    assert ours.dtype == torch.float32 and ours.shape == (2, 500) and ours_rate == rate == 8000
    np.testing.assert_array_equal(ours.numpy(), expected.T)


def test_read_audio_errors(tmp_path):
    from torchlime.music import read_audio

    with pytest.raises(ValueError, match=r"expected an audio file, got '.*nope.wav', which does not exist"):
        read_audio(tmp_path / "nope.wav")
    (tmp_path / "bad.wav").write_bytes(b"not audio at all")
    with pytest.raises(ValueError, match=r"could not read audio file '.*bad.wav': "):
        read_audio(tmp_path / "bad.wav")


def test_boundaries_are_checked_on_every_call_whatever_their_type():
    """The cut is remembered per boundaries, yet 1.0 or True (which hash like 1) never pass for ints."""
    stems, masks = torch.randn(4, 1, 10), torch.ones(2, 4)
    TF.compose_segments(stems, masks, [(0, 10)])
    TF.compose_segments(stems, masks, [(1, 10)])
    for bad in ([(0.0, 10)], [(True, 10)], [[0, 10.0]]):
        with pytest.raises(ValueError, match="expected segment 0 as a .start, end. pair of integers"):
            TF.compose_segments(stems, masks, bad)
    bounds = [(0, 5), (5, 10)]
    a = TF.compose_segments(stems, torch.ones(2, 8), bounds)
    bounds[1] = (5, 11)  # a mutated list is a new cut
    with pytest.raises(ValueError, match=r"expected segment 1 as 5 <= start < end <= 10 .*got \(5, 11\)"):
        TF.compose_segments(stems, torch.ones(2, 8), bounds)
    torch.testing.assert_close(a, TF.compose_segments(stems, torch.ones(2, 8), ((0, 5), (5, 10))), atol=0, rtol=0)
