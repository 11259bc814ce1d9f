"""StemFactorization against a per-sample numpy composition (bach-or-bot's)."""

import numpy as np
import pytest
import torch

from torchlime.music import StemFactorization


def reference_components(stems, boundaries):
    """bach-or-bot's OpenUnmixFactorization: segment-major components, summed per sample."""
    comps, names = [], []
    for g, (a, b) in enumerate(boundaries):
        for s, name in enumerate(["vocals", "drums", "bass", "other"]):
            c = np.zeros_like(stems[s])
            c[..., a:b] = stems[s][..., a:b]
            comps.append(c)
            names.append(f"{name}_T{g}")
    return comps, names


def compose_reference(comps, row):
    active = np.where(row != 0)[0]
    if len(active) == 0:
        return np.zeros_like(comps[0])
    return sum(comps[i] for i in active)


@pytest.mark.parametrize("channels", [1, 2])
def test_composition_equals_numpy_reference(channels):
    g = torch.Generator().manual_seed(0)
    T = 1003
    stems = torch.randn(4, channels, T, generator=g, dtype=torch.float64)
    # bach-or-bot's segments: T // G samples each, the tail left out.
    seg = T // 10
    bounds = [(i * seg, (i + 1) * seg) for i in range(10)]
    fac = StemFactorization(stems, sample_rate=8000, boundaries=bounds)
    comps, names = reference_components(stems.numpy(), bounds)
    assert fac.feature_names == names
    masks = torch.bernoulli(torch.full((25, 40), 0.5), generator=g)
    masks[0] = 1
    masks[1] = 0
    ours = fac.compose(masks)
    for i, row in enumerate(masks.numpy()):
        np.testing.assert_allclose(ours[i].numpy(), compose_reference(comps, row), atol=1e-12)


def test_even_segments_cover_the_song_and_residual_gives_back_the_mixture():
    g = torch.Generator().manual_seed(1)
    mixture = torch.randn(2, 999, generator=g)
    stems = torch.randn(4, 2, 999, generator=g) * 0.3
    fac = StemFactorization(stems, sample_rate=8000, num_segments=7, mixture=mixture, keep_residual=True)
    assert fac.boundaries[0][0] == 0 and fac.boundaries[-1][1] == 999
    torch.testing.assert_close(fac.compose(torch.ones(1, 28))[0], mixture, atol=1e-5, rtol=0)
    plain = StemFactorization(stems, sample_rate=8000, num_segments=7)
    torch.testing.assert_close(plain.compose(torch.ones(1, 28))[0], stems.sum(0), atol=1e-5, rtol=0)
    torch.testing.assert_close(fac.compose(torch.zeros(1, 28))[0], mixture - stems.sum(0), atol=1e-5, rtol=0)


def test_component_audio_and_batch_equals_loop():
    stems = torch.randn(4, 1, 400)
    fac = StemFactorization(stems, sample_rate=8000, num_segments=4)
    drums_t1 = fac.component_audio(["drums_T1"])
    expected = torch.zeros(1, 400)
    expected[:, 100:200] = stems[1, :, 100:200]
    torch.testing.assert_close(drums_t1, expected)
    masks = torch.bernoulli(torch.full((6, 16), 0.5))
    batch = fac.compose(masks)
    for i in range(6):
        torch.testing.assert_close(batch[i], fac.compose(masks[i : i + 1])[0])


def test_errors():
    with pytest.raises(ValueError, match="expected audio with sound in it, got silent"):
        StemFactorization(torch.zeros(4, 1, 100), sample_rate=8000)
    with pytest.raises(ValueError, match="expected finite stems, got NaN or inf"):
        StemFactorization(torch.full((4, 1, 100), float("nan")), sample_rate=8000)
    # one bad value among sound (the check is a single min/max pass: NaN and +-inf all show)
    for bad in (float("nan"), float("inf"), float("-inf")):
        stems = torch.randn(4, 2, 100)
        stems[2, 1, 57] = bad
        with pytest.raises(ValueError, match="expected finite stems, got NaN or inf"):
            StemFactorization(stems, sample_rate=8000)
    quiet = torch.zeros(4, 1, 100)
    quiet[3, 0, 99] = -1e-6  # one sample of sound is not silence
    assert StemFactorization(quiet, sample_rate=8000).stems.shape == (4, 1, 100)
    with pytest.raises(ValueError, match="expected audio of at least 10 samples .* got 5"):
        StemFactorization(torch.randn(4, 1, 5), sample_rate=8000)
    with pytest.raises(ValueError, match=r"expected stems of shape \(S, C, T\) or \(S, T\)"):
        StemFactorization(torch.randn(4, 1, 1, 100), sample_rate=8000)
    with pytest.raises(ValueError, match="expected 4 stem names, got 2"):
        StemFactorization(torch.randn(4, 1, 100), sample_rate=8000, stem_names=["a", "b"])
    with pytest.raises(ValueError, match="expected the mixture when keep_residual=True"):
        StemFactorization(torch.randn(4, 1, 100), sample_rate=8000, keep_residual=True)
    with pytest.raises(ValueError, match="expected a positive integer sample_rate"):
        StemFactorization(torch.randn(4, 1, 100), sample_rate=0)
    # one boundary check (functional.segments.check_boundaries), its message prefixed with the factorization
    where = r"StemFactorization of stems \['vocals', 'drums', 'bass', 'other'\] \(1 channel\(s\), 100 samples at 8000 Hz\): "
    with pytest.raises(ValueError, match=where + r"expected segment 1 as 50 <= start < end <= 100 \(increasing, "
                       r"non-overlapping\), got \(50, 120\)"):
        StemFactorization(torch.randn(4, 1, 100), sample_rate=8000, boundaries=[(0, 50), (50, 120)])
    with pytest.raises(ValueError, match=where + r"expected segment 1 as 50 <= start < end <= 100 .*got \(40, 60\)"):
        StemFactorization(torch.randn(4, 1, 100), sample_rate=8000, boundaries=[(0, 50), (40, 60)])
    with pytest.raises(ValueError, match=where + r"expected segment 0 as a \(start, end\) pair of integers, got \(0.5, 10\)"):
        StemFactorization(torch.randn(4, 1, 100), sample_rate=8000, boundaries=[(0.5, 10)])
    with pytest.raises(ValueError, match=where + "expected at least one segment, got no boundaries"):
        StemFactorization(torch.randn(4, 1, 100), sample_rate=8000, boundaries=[])
    fac = StemFactorization(torch.randn(4, 1, 100), sample_rate=8000)
    with pytest.raises(ValueError, match=r"StemFactorization\(stems=\['vocals', 'drums', 'bass', 'other'\], num_segments=10, "
                       r"channels=1, samples=100, sample_rate=8000\): expected masks of shape \(\.\.\., n, 40\) for 4 stems x "
                       r"10 segments, got shape \(3, 39\)"):
        fac.compose(torch.ones(3, 39))
    with pytest.raises(ValueError, match=r"expected a feature index in \[0, 39\]|expected 0 <= a feature index <= 39, got 40"):
        fac.feature_stem_segment(40)
    with pytest.raises(ValueError, match="expected feature names of StemFactorization.*got 'piano_T0'"):
        fac.component_audio(["piano_T0"])


@pytest.mark.parametrize("layout", ["uneven", "gaps", "residual"])
@pytest.mark.parametrize("channels", [1, 2])
def test_composition_layouts_equal_numpy_reference(layout, channels):
    # compose writes runs of equal-length segments with one bmm each: cover runs of two
    # lengths (999 = 6 x 143 + 141), segments with gaps between them, and a residual.
    g = torch.Generator().manual_seed(2)
    T = 999
    stems = torch.randn(4, channels, T, generator=g, dtype=torch.float64)
    mixture = stems.sum(0) + 0.1 * torch.randn(channels, T, generator=g, dtype=torch.float64)
    if layout == "gaps":
        bounds = [(0, 100), (150, 250), (250, 350), (400, 499), (600, 999)]
        fac = StemFactorization(stems, sample_rate=8000, boundaries=bounds)
    else:
        fac = StemFactorization(stems, sample_rate=8000, num_segments=7, mixture=mixture,
                                keep_residual=layout == "residual")
        bounds = fac.boundaries
    comps, _ = reference_components(stems.numpy(), bounds)
    masks = torch.bernoulli(torch.full((9, 4 * len(bounds)), 0.5), generator=g)
    ours = fac.compose(masks)
    base = (mixture - stems.sum(0)).numpy() if layout == "residual" else 0
    for i, row in enumerate(masks.numpy()):
        np.testing.assert_allclose(ours[i].numpy(), base + compose_reference(comps, row), atol=1e-12)


@pytest.mark.parametrize("residual", [False, True])
def test_compose_into_a_given_buffer(residual):
    g = torch.Generator().manual_seed(3)
    stems = torch.randn(4, 2, 640, generator=g)
    fac = StemFactorization(stems, sample_rate=8000, boundaries=[(0, 100), (200, 640)],
                            mixture=stems.sum(0) + 0.5, keep_residual=residual)
    masks = torch.bernoulli(torch.full((5, 8), 0.5), generator=g)
    out = torch.full((5, 2, 640), 7.0)  # stale data must not survive
    assert fac.compose(masks, out=out) is out
    torch.testing.assert_close(out, fac.compose(masks))
    with pytest.raises(ValueError, match=r"StemFactorization\(.*\): expected out as a contiguous \(5, 2, 640\) torch.float32 tensor on cpu, got \(5, 2, 64\)"):
        fac.compose(masks, out=torch.empty(5, 2, 64))
