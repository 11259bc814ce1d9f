import pytest
import torch

DEVICES = ["cpu", pytest.param("cuda", marks=pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device"))]


@pytest.fixture(params=DEVICES)
def device(request):
    return torch.device(request.param)


@pytest.fixture(params=[torch.float32, torch.float64], ids=["float32", "float64"])
def dtype(request):
    return request.param


class FakeGenerator:
    """Stands in for a generator on another device where that device is absent."""

    def __init__(self, device):
        self.device = torch.device(device)


@pytest.fixture(autouse=True, scope="session")
def _stems_cache_in_a_temporary_folder(tmp_path_factory):
    """The CLI caches separated stems under $TORCHLIME_CACHE: never the user's cache in tests."""
    import os

    previous = os.environ.get("TORCHLIME_CACHE")
    os.environ["TORCHLIME_CACHE"] = str(tmp_path_factory.mktemp("torchlime_cache"))
    yield
    if previous is None:
        os.environ.pop("TORCHLIME_CACHE", None)
    else:
        os.environ["TORCHLIME_CACHE"] = previous
