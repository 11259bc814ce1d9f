"""The install works: the audio stack loads, the core runs without it, extras fail clearly.

These tests catch dependency drift on the day it happens (a new torchaudio that does not
load with the pinned torch, a Captum whose internals moved), in CI, not in a user's hands.
"""

import os
import subprocess
import sys
import textwrap
import tomllib
from pathlib import Path

import pytest
import torch

import torchlime
from torchlime._deps import AUDIO_PINS, installed_version

ROOT = Path(__file__).resolve().parents[1]


def run_python(code: str, *, env_extra: dict | None = None, path_first: Path | None = None) -> subprocess.CompletedProcess:
    """Run ``code`` in a fresh interpreter that imports this checkout's torchlime."""
    env = dict(os.environ)
    paths = [str(ROOT)] + ([str(path_first)] if path_first else [])
    if path_first:
        paths = [str(path_first), str(ROOT)]
    env["PYTHONPATH"] = os.pathsep.join(paths + [env.get("PYTHONPATH", "")])
    env.update(env_extra or {})
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, env=env, cwd=ROOT, timeout=300
    )


# Makes the named top-level packages look uninstalled: the path finder no longer sees them
# (import raises ModuleNotFoundError, importlib.util.find_spec returns None).
BLOCK = """
import importlib.machinery, sys
class Hide:
    def __init__(self, finder, names):
        self.finder, self.names = finder, set(names)
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in self.names:
            return None
        return self.finder.find_spec(name, path, target)
    def __getattr__(self, attr):
        return getattr(self.finder, attr)
sys.meta_path[:] = [Hide(f, {names!r}) if f is importlib.machinery.PathFinder else f for f in sys.meta_path]
"""


# -- the audio stack loads --------------------------------------------------------------


def test_audio_stack_loads_and_runs():
    """Import torchaudio and openunmix and run one resample and one Open-Unmix forward."""
    versions = f"torch {torch.__version__}, torchaudio {installed_version('torchaudio')}"
    try:
        import openunmix.model
        import torchaudio.functional as AF
    except Exception as err:  # noqa: BLE001 - a mismatched wheel raises OSError
        pytest.fail(
            f"the installed audio stack does not load ({versions}): {type(err).__name__}: {err}. "
            f"torchaudio's wheels load only with the torch they were built for; pin the pair that "
            f"loads in pyproject.toml (the audio extra) and in torchlime/_deps.py AUDIO_PINS."
        )
    wave = torch.randn(2, 4410, generator=torch.Generator().manual_seed(0))
    down = AF.resample(wave, 44100, 16000)
    assert down.shape == (2, 1600)
    # Resampling is linear: the sum of resampled halves is the resampled whole.
    torch.testing.assert_close(AF.resample(wave[:1] + wave[1:], 44100, 16000)[0], down.sum(0), atol=1e-5, rtol=1e-5)
    torch.manual_seed(0)
    n_fft, hop = 256, 64
    net = openunmix.model.OpenUnmix(nb_bins=n_fft // 2 + 1, nb_channels=2, hidden_size=16, max_bin=64)
    sep = openunmix.model.Separator({"vocals": net, "other": net}, niter=0, n_fft=n_fft, n_hop=hop, nb_channels=2,
                                    sample_rate=16000.0).eval()
    with torch.no_grad():
        stems = sep(torch.randn(1, 2, 4000))
    assert stems.shape == (1, 2, 2, 4000) and torch.isfinite(stems).all()


def test_audio_pins_are_exact_and_match_the_package():
    """pyproject's audio extra pins the pair in AUDIO_PINS exactly, and that pair is installed."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    audio = project["optional-dependencies"]["audio"]
    for name, version in AUDIO_PINS.items():
        assert f"{name}=={version}" in audio, f"expected {name}=={version} in the audio extra, got {audio}"
        installed = installed_version(name).split("+")[0]
        assert installed == version, f"expected {name} {version} (pinned) installed, got {installed}"
    captum = [d for d in project["dependencies"] if d.startswith("captum")]
    assert captum == [f"captum{torchlime._captum.CAPTUM_RANGE}"]


# -- clear errors where a dependency is missing or broken ---------------------------------


@pytest.fixture
def broken_torchaudio(tmp_path):
    """A torchaudio package that fails to load like a wheel built for another torch."""
    pkg = tmp_path / "torchaudio"
    pkg.mkdir()
    (pkg / "__init__.py").write_text(
        'raise OSError("Could not load this library: libtorchaudio.so '
        '(undefined symbol: torch_exception_get_what_without_backtrace)")\n'
    )
    return tmp_path


def test_music_with_broken_torchaudio_raises_one_clear_error(broken_torchaudio):
    result = run_python(
        """
        import torchlime
        try:
            import torchlime.music
        except torchlime.AudioStackError as err:
            print("MESSAGE:", err)
        """,
        path_first=broken_torchaudio,
    )
    assert result.returncode == 0, result.stderr
    message = result.stdout
    assert "importing torchaudio failed (OSError: Could not load this library" in message
    assert f"torch {installed_version('torch')}" in message
    pair = " ".join(f'"{n}=={v}"' for n, v in AUDIO_PINS.items())
    assert f"pip install {pair}" in message


@pytest.mark.parametrize("command", [["demo", "--n-samples", "8"], ["evaluate", "--demo"]])
def test_cli_with_broken_torchaudio_prints_one_line(broken_torchaudio, command, tmp_path):
    result = run_python(
        f"import sys; from torchlime.cli import main; sys.exit(main({command!r} + ['--out', {str(tmp_path)!r}]))",
        path_first=broken_torchaudio,
    )
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "needs torchaudio and openunmix" in lines[0] and "pip install" in lines[0], result.stderr


def test_core_works_without_torchaudio_and_openunmix():
    result = run_python(
        BLOCK.format(names=["torchaudio", "openunmix"])
        + """
import numpy as np, torch
from torchlime import *
from torchlime import compat, functional, models
import torchlime

net = torch.nn.Linear(4, 3)
x = torch.randn(2, 4)
g = lambda: torch.Generator().manual_seed(0)
a = Lime(net).attribute(x, target=1, n_samples=40, generator=g())
k = KernelShap(net).attribute(x, target=0, n_samples=40, generator=g())
fit = models.Ridge(alpha=1.0).fit_tensors(torch.rand(50, 4), torch.rand(50))
masks = functional.bernoulli_masks(10, 4, generator=g())
base = compat.LimeBase(lambda d: np.sqrt(np.exp(-d ** 2 / 0.25 ** 2)))
data = (np.random.default_rng(0).random((30, 4)) > 0.5).astype(float)
out = base.explain_instance_with_data(data, data @ np.ones((4, 2)), np.zeros(30), 0, 2)
assert a.shape == (2, 4) and k.shape == (2, 4) and masks.shape == (10, 4) and len(out[1]) == 2
assert "torchaudio" not in sys.modules and "openunmix" not in sys.modules
try:
    import torchlime.music
except torchlime.AudioStackError as err:
    print("MUSIC:", err)
print("OK")
""",
    )
    assert result.returncode == 0, result.stderr
    assert "OK" in result.stdout
    assert "MUSIC: torchlime.music needs torchaudio and openunmix, but importing torchaudio failed" in result.stdout


def test_star_import_without_torchmetrics():
    result = run_python(
        BLOCK.format(names=["torchmetrics"])
        + """
from torchlime import *
import torchlime
assert "GlobalAggregator" not in torchlime.__all__
try:
    torchlime.GlobalAggregator
except ModuleNotFoundError as err:
    print("AGG:", err)
print("OK", Lime.__name__)
""",
    )
    assert result.returncode == 0, result.stderr
    assert "OK Lime" in result.stdout
    assert "AGG: torchlime.GlobalAggregator needs torchmetrics, which is not installed: pip install 'torchlime[metrics]'" in result.stdout


def test_star_import_with_every_extra_lists_the_aggregator():
    namespace: dict = {}
    exec("from torchlime import *", namespace)
    assert all(name in namespace for name in torchlime.__all__)
    assert "GlobalAggregator" in namespace


def test_captum_whose_internals_moved_fails_at_import():
    result = run_python(
        """
        import captum.attr
        del captum.attr.Lime._attribute_kwargs
        try:
            import torchlime
        except ImportError as err:
            print("ERR:", err)
        """
    )
    assert result.returncode == 0, result.stderr
    assert "ERR: torchlime needs Captum's Lime._attribute_kwargs, which the installed captum" in result.stdout
    assert "pip install 'captum>=0.9,<0.10'" in result.stdout
