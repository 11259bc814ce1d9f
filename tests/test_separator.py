"""OpenUnmixSeparator on small random-init Open-Unmix checkpoints saved in openunmix's format."""

import json
import urllib.error

import pytest
import torch

pytest.importorskip("openunmix")
pytest.importorskip("torchaudio")

import openunmix  # noqa: E402
from openunmix.model import OpenUnmix  # noqa: E402
from torchaudio.functional import resample  # noqa: E402

from torchlime.music import OpenUnmixSeparator  # noqa: E402

TARGETS = ("vocals", "drums", "bass", "other")
N_FFT, N_HOP, HIDDEN, MAX_BIN, RATE = 512, 128, 16, 64, 44100


def write_checkpoint(folder, targets=TARGETS, nb_channels=2, sample_rate=RATE, seed=0):
    """Writes a folder exactly as openunmix's scripts/train.py does, with tiny random models.

    separator.json: {"nfft", "nhop", "sample_rate", "nb_channels"} (read by load_separator);
    <target>.json: {"args": {"nfft", "nhop", "nb_channels", "hidden_size", ...}} (load_target_models
    reads nfft, nb_channels, hidden_size; max_bin comes from the state dict's input_mean);
    <target>.pth: the OpenUnmix state dict (nb_layers is not stored: the loader always builds 3).
    """
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "separator.json").write_text(
        json.dumps({"nfft": N_FFT, "nhop": N_HOP, "sample_rate": sample_rate, "nb_channels": nb_channels})
    )
    states = {}
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        for target in targets:
            net = OpenUnmix(nb_bins=N_FFT // 2 + 1, nb_channels=nb_channels, hidden_size=HIDDEN, max_bin=MAX_BIN)
            with torch.no_grad():  # non-trivial scalers and output stats, so each stem differs
                net.input_mean.normal_(0, 0.1)
                net.input_scale.uniform_(0.5, 2.0)
                net.output_mean.uniform_(0.5, 1.5)
                net.bn3.running_mean.normal_(0, 0.5)
            args = {"target": target, "nfft": N_FFT, "nhop": N_HOP, "nb_channels": nb_channels,
                    "hidden_size": HIDDEN, "bandwidth": 16000, "seed": seed}
            (folder / f"{target}.json").write_text(json.dumps({"args": args, "epochs_trained": 0}))
            torch.save(net.state_dict(), folder / f"{target}.pth")
            states[target] = net.state_dict()
    return states


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    folder = tmp_path_factory.mktemp("umx_tiny")
    write_checkpoint(folder)
    return folder


@pytest.fixture(scope="module")
def sep(ckpt):
    return OpenUnmixSeparator(ckpt, device="cpu")


def noise(*shape, seed=0):
    return 0.3 * torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


# ---------------------------------------------------------------- loading


def test_loads_folder_through_openunmix(ckpt, tmp_path):
    states = write_checkpoint(tmp_path / "again")
    sep = OpenUnmixSeparator(tmp_path / "again", device="cpu")
    assert isinstance(sep.module, openunmix.model.Separator)
    assert sep.targets == list(TARGETS)
    assert sep.sample_rate == 44100.0 and isinstance(sep.sample_rate, float)
    assert sep.nb_channels == 2
    assert not sep.module.training
    for target in TARGETS:
        loaded = sep.module.target_models[target].state_dict()
        for key, value in states[target].items():
            torch.testing.assert_close(loaded[key], value, rtol=0, atol=0)
    assert "OpenUnmixSeparator(model=" in repr(sep)


def test_not_pretrained_keeps_the_architecture_not_the_weights(ckpt, sep):
    fresh = OpenUnmixSeparator(ckpt, pretrained=False, device="cpu")
    assert fresh.nb_channels == 2 and fresh.targets == list(TARGETS)
    a = sep.module.target_models["vocals"].input_mean
    b = fresh.module.target_models["vocals"].input_mean
    assert a.shape == b.shape and not torch.equal(a, b)


def test_subset_of_targets_and_residual(ckpt):
    sep = OpenUnmixSeparator(ckpt, targets=["bass", "vocals"], residual=True, device="cpu")
    assert sep.targets == ["bass", "vocals", "residual"]
    assert sep(noise(2, 8000), 44100).shape == (3, 2, 8000)


def test_hash_suffixed_weights_are_found(tmp_path):
    write_checkpoint(tmp_path, targets=("vocals",))
    (tmp_path / "vocals.pth").rename(tmp_path / "vocals-0123abcd.pth")
    sep = OpenUnmixSeparator(tmp_path, targets=["vocals"], niter=0, device="cpu")
    assert sep(noise(2, 4000), 44100).shape == (1, 2, 4000)


def test_published_name_offline_raises_clear_error(monkeypatch):
    def offline(*args, **kwargs):
        raise urllib.error.URLError("[Errno -2] Name or service not known")

    # openunmix's hub entry points call torch.hub.load_state_dict_from_url: no network here
    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", offline)
    with pytest.raises(RuntimeError, match=r"could not fetch the pretrained weights .*'umxse'.*local checkpoint folder"):
        OpenUnmixSeparator("umxse", device="cpu")


def test_published_name_without_weights_builds_the_architecture(monkeypatch):
    def offline(*args, **kwargs):  # pretrained=False must not touch the network
        raise AssertionError("downloaded")

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", offline)
    sep = OpenUnmixSeparator("umxse", pretrained=False, device="cpu")
    assert sep.targets == ["speech", "noise"]
    assert sep.sample_rate == 16000.0 and sep.nb_channels == 1
    assert sep(noise(8000), 16000).shape == (2, 1, 8000)
    with pytest.raises(ValueError, match=r"expected audio with 1 channel\(s\).*got 2 channels"):
        sep(noise(2, 8000), 16000)


# ---------------------------------------------------------------- shapes, rates, channels


@pytest.mark.parametrize(
    "shape,expected",
    [((6000,), (4, 1, 6000)), ((1, 6000), (4, 1, 6000)), ((2, 6000), (4, 2, 6000)), ((3, 2, 6000), (3, 4, 2, 6000)),
     ((2, 1, 6000), (2, 4, 1, 6000))],
)
def test_output_shapes(sep, shape, expected):
    stems = sep.separate(noise(*shape), 44100)
    assert stems.shape == expected
    assert stems.dtype == torch.float32 and stems.device.type == "cpu"
    assert torch.isfinite(stems).all()


def test_call_equals_separate(sep):
    x = noise(2, 5000)
    torch.testing.assert_close(sep(x, 44100), sep.separate(x, 44100), rtol=0, atol=0)


@pytest.mark.parametrize("in_rate,out_rate,T", [(22050, 16000, 11025), (22050, None, 11025), (48000, 44100, 9601), (8000, 22050, 3001)])
def test_resampling_lengths(sep, in_rate, out_rate, T):
    stems = sep(noise(2, T), in_rate, output_sample_rate=out_rate)
    out = in_rate if out_rate is None else out_rate
    assert stems.shape == (4, 2, round(T * out / in_rate))


def test_resampling_goes_through_the_model_rate(ckpt):
    # with residual and niter=0 the stems sum to the separated mixture exactly, so the sum
    # shows which signal was separated: the input resampled to 44100 Hz and back out
    sep = OpenUnmixSeparator(ckpt, residual=True, niter=0, device="cpu")
    x = noise(2, 11025)
    stems = sep(x, 22050, output_sample_rate=16000)
    expected = resample(resample(x, 22050, 44100), 44100, 16000)[..., :8000]
    torch.testing.assert_close(stems.sum(0), expected, rtol=0, atol=1e-5)  # float32 STFT round trip


def test_float64_input_and_integral_float_rates(sep):
    x = noise(2, 4000)
    torch.testing.assert_close(sep(x.double(), 44100.0), sep(x, 44100), rtol=0, atol=1e-6)
    np = pytest.importorskip("numpy")  # rates read by audio libraries often come as numpy ints
    torch.testing.assert_close(sep(x, np.int64(44100)), sep(x, 44100), rtol=0, atol=0)


def test_mono_stems_are_the_channel_mean_of_duplicated_input(sep):
    x = noise(5000)
    stereo = sep(x.expand(2, -1), 44100)
    torch.testing.assert_close(sep(x, 44100), stereo.mean(1, keepdim=True), rtol=0, atol=1e-6)
    torch.testing.assert_close(sep(x[None], 44100), sep(x, 44100), rtol=0, atol=0)


# ---------------------------------------------------------------- behaviour


@pytest.mark.parametrize("channels", [2, 1])
def test_batch_equals_loop(sep, channels):
    x = noise(3, channels, 7000)  # mono songs are resampled, then given to the stereo model (a batched explain-dataset)
    batched = sep(x, 22050, output_sample_rate=16000)
    looped = torch.stack([sep(song, 22050, output_sample_rate=16000) for song in x])
    # eval-mode BatchNorm, per-song Wiener filtering: songs do not interact; the tolerance
    # covers matmuls of a different batch size summing in a different order
    torch.testing.assert_close(batched, looped, rtol=1e-4, atol=1e-5)


def test_deterministic(sep):
    x = noise(2, 6000, seed=3)
    torch.testing.assert_close(sep(x, 44100), sep(x, 44100), rtol=0, atol=0)


@pytest.mark.parametrize("niter", [0, 1])
def test_residual_stems_sum_to_the_mixture(ckpt, niter):
    # openunmix.filtering.wiener: with residual=True the initial estimates sum to the mixture
    # STFT exactly; the EM's Wiener gains sum to the identity up to its eps regularisation.
    sep = OpenUnmixSeparator(ckpt, residual=True, niter=niter, device="cpu")
    x = noise(2, 2, 6000, seed=4)
    stems = sep(x, 44100)
    assert stems.shape == (2, 5, 2, 6000)
    torch.testing.assert_close(stems.sum(1), x, rtol=0, atol=1e-4 if niter else 1e-5)


def test_niter_zero_differs_from_em(ckpt, sep):
    x = noise(2, 6000)
    plain = OpenUnmixSeparator(ckpt, niter=0, device="cpu")(x, 44100)
    assert not torch.allclose(plain, sep(x, 44100))


def test_no_grad_and_frozen(sep):
    x = noise(2, 4000).requires_grad_()
    assert not sep(x, 44100).requires_grad
    assert not any(p.requires_grad for p in sep.module.parameters())


def test_device(ckpt, device):
    sep = OpenUnmixSeparator(ckpt, device=device)
    assert sep.device == device
    stems = sep(noise(2, 4000), 44100)  # input on the CPU is moved to the separator's device
    assert stems.device.type == device.type and stems.dtype == torch.float32


def test_mono_model_folder(tmp_path):
    write_checkpoint(tmp_path, targets=("speech", "noise"), nb_channels=1, sample_rate=16000)
    sep = OpenUnmixSeparator(tmp_path, targets=["speech", "noise"], device="cpu")
    assert sep.nb_channels == 1 and sep.sample_rate == 16000.0
    assert sep(noise(1, 3000), 16000, output_sample_rate=8000).shape == (2, 1, 1500)


# ---------------------------------------------------------------- errors: construction


def test_missing_folder(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"published Open-Unmix model name .*separator.json, vocals.json, vocals.pth.*does not exist"):
        OpenUnmixSeparator(tmp_path / "nope")


def test_unknown_name_is_taken_as_a_missing_folder():
    with pytest.raises(FileNotFoundError, match=r"got 'umxxl', which does not exist"):
        OpenUnmixSeparator("umxxl")


def test_file_instead_of_folder(tmp_path):
    (tmp_path / "f.pth").write_bytes(b"")
    with pytest.raises(NotADirectoryError, match=r"expected a checkpoint folder .* got the file"):
        OpenUnmixSeparator(tmp_path / "f.pth")


def test_missing_target_files(tmp_path):
    write_checkpoint(tmp_path, targets=("vocals", "drums"))
    with pytest.raises(FileNotFoundError, match=r"missing \['bass.json', 'other.json', 'bass.pth', 'other.pth'\]"):
        OpenUnmixSeparator(tmp_path)
    (tmp_path / "drums.pth").unlink()
    with pytest.raises(FileNotFoundError, match=r"missing \['drums.pth'\]"):
        OpenUnmixSeparator(tmp_path, targets=["vocals", "drums"])


def test_missing_separator_json(tmp_path):
    write_checkpoint(tmp_path, targets=("vocals",))
    (tmp_path / "separator.json").unlink()
    with pytest.raises(FileNotFoundError, match=r"missing \['separator.json'\]"):
        OpenUnmixSeparator(tmp_path, targets=["vocals"], niter=0)


def test_malformed_json(tmp_path):
    write_checkpoint(tmp_path, targets=("vocals",))
    (tmp_path / "separator.json").write_text(json.dumps({"nfft": N_FFT, "nhop": N_HOP}))
    with pytest.raises(ValueError, match=r"separator.json \(the separator config\) to hold keys .*missing \['sample_rate', 'nb_channels'\]"):
        OpenUnmixSeparator(tmp_path, targets=["vocals"], niter=0)
    write_checkpoint(tmp_path, targets=("vocals",))
    (tmp_path / "vocals.json").write_text(json.dumps({"nfft": N_FFT}))
    with pytest.raises(ValueError, match=r"vocals.json \(the config of target 'vocals'\) to hold \"args\" with keys"):
        OpenUnmixSeparator(tmp_path, targets=["vocals"], niter=0)
    (tmp_path / "vocals.json").write_text("{not json")
    with pytest.raises(ValueError, match=r"vocals.json to be valid JSON"):
        OpenUnmixSeparator(tmp_path, targets=["vocals"], niter=0)


def test_state_dict_without_input_mean(tmp_path):
    write_checkpoint(tmp_path, targets=("vocals",))
    torch.save({"fc1.weight": torch.zeros(1)}, tmp_path / "vocals.pth")
    with pytest.raises(ValueError, match=r"to hold an OpenUnmix state dict, missing key 'input_mean'"):
        OpenUnmixSeparator(tmp_path, targets=["vocals"], niter=0)


def test_state_dict_of_the_wrong_shape(tmp_path):
    write_checkpoint(tmp_path, targets=("vocals",))
    cfg = json.loads((tmp_path / "vocals.json").read_text())
    cfg["args"]["hidden_size"] = 2 * HIDDEN
    (tmp_path / "vocals.json").write_text(json.dumps(cfg))
    with pytest.raises(ValueError, match=r"(?s)could not load the Open-Unmix checkpoint folder .*size mismatch for fc1.weight.*more lines"):
        OpenUnmixSeparator(tmp_path, targets=["vocals"], niter=0)


@pytest.mark.parametrize(
    "kwargs,error,match",
    [
        (dict(model=3), TypeError, r"expected model to be a published model name or a folder path, got int"),
        (dict(targets="vocals"), TypeError, r"expected targets to be a sequence of stem names .* got 'vocals'"),
        (dict(targets=["vocals", 1]), TypeError, r"expected target names to be non-empty strings, got \[1\]"),
        (dict(targets=[]), ValueError, r"expected at least one target, got an empty sequence"),
        (dict(targets=["bass", "bass"]), ValueError, r"expected distinct targets, got \['bass', 'bass'\]"),
        (dict(targets=["residual", "bass"], residual=True), ValueError, r'expected no target named "residual"'),
        (dict(targets=["bass"]), ValueError, r"expected niter=0 or residual=True with a single target"),
        (dict(niter=-1), ValueError, r"expected niter >= 0, got -1"),
        (dict(niter=1.0), TypeError, r"expected niter to be an int, got float"),
        (dict(wiener_win_len=0), ValueError, r"expected wiener_win_len >= 1 or None, got 0"),
        (dict(wiener_win_len=2.5), TypeError, r"expected wiener_win_len to be an int or None, got float"),
        (dict(pretrained="yes"), TypeError, r"expected pretrained to be a bool, got str"),
        (dict(residual=1), TypeError, r"expected residual to be a bool, got int"),
        (dict(device="gpu0"), ValueError, r"expected a torch device such as 'cpu' or 'cuda', got 'gpu0'"),
        (dict(model="umxl", targets=["piano"]), ValueError, r"expected targets of 'umxl' among \['vocals', 'drums', 'bass', 'other'\], got \['piano'\]"),
    ],
)
def test_constructor_errors(ckpt, kwargs, error, match):
    kwargs.setdefault("model", ckpt)
    with pytest.raises(error, match=match):
        OpenUnmixSeparator(**kwargs)


# ---------------------------------------------------------------- errors: separate


@pytest.mark.parametrize(
    "audio,rates,error,match",
    [
        ([0.0] * 1000, (44100,), TypeError, r"expected audio to be a torch.Tensor, got list"),
        (torch.zeros(2, 1000, dtype=torch.int16), (44100,), TypeError, r"expected floating-point audio, got torch.int16"),
        (torch.zeros(1, 1, 2, 1000), (44100,), ValueError, r"expected audio of shape \(T,\), \(C, T\) or \(B, C, T\), got 4 dims"),
        (torch.zeros(()), (44100,), ValueError, r"expected audio of shape .* got 0 dims"),
        (torch.zeros(0), (44100,), ValueError, r"expected non-empty audio, got shape \(0,\)"),
        (torch.zeros(2, 0), (44100,), ValueError, r"expected non-empty audio, got shape \(2, 0\)"),
        (torch.zeros(0, 2, 1000), (44100,), ValueError, r"expected non-empty audio, got shape \(0, 2, 1000\)"),
        (torch.zeros(3, 1000), (44100,), ValueError, r"expected audio with 1 or 2 channel\(s\) .* got 3 channels"),
        (torch.zeros(1000, 2), (44100,), ValueError, r"channels come first.* got 1000 channels"),
        (torch.full((2, 1000), float("nan")), (44100,), ValueError, r"expected finite audio, got NaN or inf"),
        (torch.tensor([0.0, float("inf")]).repeat(500), (44100,), ValueError, r"expected finite audio, got NaN or inf"),
        (torch.zeros(2, 1000), (0,), ValueError, r"expected sample_rate > 0, got 0"),
        (torch.zeros(2, 1000), (-8000,), ValueError, r"expected sample_rate > 0, got -8000"),
        (torch.zeros(2, 1000), (22050.5,), ValueError, r"expected an integer sample_rate \(Hz\), got 22050.5"),
        (torch.zeros(2, 1000), ("44100",), TypeError, r"expected sample_rate to be a positive integer, got str"),
        (torch.zeros(2, 1000), (True,), TypeError, r"expected sample_rate to be a positive integer, got bool"),
        (torch.zeros(2, 1000), (44100, 0), ValueError, r"expected output_sample_rate > 0, got 0"),
        (torch.zeros(2, 100), (44100,), ValueError, r"expected audio of at least 257 samples at 44100 Hz .* got 100"),
        (torch.zeros(2, 100), (22050,), ValueError, r"expected audio of at least 129 samples at 22050 Hz .* got 100"),
    ],
)
def test_separate_errors(sep, audio, rates, error, match):
    with pytest.raises(error, match=match):
        sep.separate(audio, *rates)


def test_a_local_folder_named_like_a_published_model_is_the_folder(tmp_path, monkeypatch):
    from torchlime.music import OpenUnmixSeparator

    monkeypatch.chdir(tmp_path)
    write_checkpoint(tmp_path / "umx")
    sep = OpenUnmixSeparator("umx")  # would download the published 'umx' weights otherwise
    assert sep.sample_rate == RATE


# ---------------------------------------------------------------- saving, identity, progress


def test_save_writes_a_folder_that_loads_offline(ckpt, sep, tmp_path):
    files = sep.save(tmp_path / "copy")
    assert sorted(f.name for f in files) == sorted(
        ["separator.json"] + [f"{t}{ext}" for t in TARGETS for ext in (".json", ".pth")])
    again = OpenUnmixSeparator(tmp_path / "copy", device="cpu")
    x = noise(2, 6000)
    torch.testing.assert_close(again(x, 44100), sep(x, 44100), rtol=0, atol=0)
    assert json.loads((tmp_path / "copy" / "vocals.json").read_text())["args"]["max_bin"] == MAX_BIN
    assert again.identity == sep.identity  # the same weights in another folder: the same stems
    assert not list((tmp_path / "copy").glob(".*"))  # written atomically


def test_save_refuses_a_folder_with_a_checkpoint_and_other_objects(ckpt, sep, tmp_path):
    sep.save(tmp_path)
    with pytest.raises(FileExistsError, match=r"already holds \['separator.json', 'vocals.json'"):
        sep.save(tmp_path)
    with pytest.raises(TypeError, match="expected an OpenUnmixSeparator or an openunmix.model.Separator, got dict"):
        from torchlime.music import save_separator

        save_separator({}, tmp_path / "x")


def test_save_refuses_what_openunmix_cannot_load(tmp_path):
    from torchlime.music import save_separator

    net = OpenUnmix(nb_bins=N_FFT // 2 + 1, nb_channels=2, hidden_size=HIDDEN, max_bin=MAX_BIN, unidirectional=True)
    module = openunmix.model.Separator({"vocals": net}, n_fft=N_FFT, n_hop=N_HOP, nb_channels=2)
    with pytest.raises(ValueError, match=r"expected target 'vocals' with 3 bidirectional LSTM layers .*bidirectional=False"):
        save_separator(module, tmp_path)


def test_identity_names_the_weights_and_every_option(ckpt, sep, tmp_path):
    write_checkpoint(tmp_path / "other", seed=1)
    assert OpenUnmixSeparator(tmp_path / "other", device="cpu").identity != sep.identity
    assert OpenUnmixSeparator(ckpt, niter=0, device="cpu").identity != sep.identity
    assert OpenUnmixSeparator(ckpt, targets=["vocals", "bass"], device="cpu").identity != sep.identity
    assert OpenUnmixSeparator(ckpt, pretrained=False, device="cpu").identity != sep.identity  # random weights
    identity = OpenUnmixSeparator("umxse", pretrained=False, device="cpu").identity
    assert identity["targets"] == ["speech", "noise"] and identity["sample_rate"] == 16000
    json.dumps(sep.identity)  # a cache key: JSON-able


def test_progress_bar_counts_the_target_models(sep, capsys, monkeypatch):
    import tqdm.auto

    closed = []

    class Recorded(tqdm.auto.tqdm):
        def close(self):
            closed.append((self.n, self.total))
            super().close()

    monkeypatch.setattr(tqdm.auto, "tqdm", Recorded)
    x = noise(2, 6000)
    quiet = sep(x, 44100)
    assert closed == [] and capsys.readouterr().err == ""
    shown = sep(x, 44100, show_progress=True, desc="separating song.wav")
    assert "separating song.wav" in capsys.readouterr().err
    assert closed and set(closed) == {(5, 5)}  # 4 target models, then the Wiener filter and inverse STFT
    torch.testing.assert_close(shown, quiet, rtol=0, atol=0)
    assert not any(m._forward_hooks for m in sep.module.target_models.values())  # hooks removed
