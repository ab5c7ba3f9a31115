"""Shared test set-up: the repo root on sys.path and one CPU thread."""
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import pytest  # noqa: E402
import torch  # noqa: E402

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def private_cache(tmp_path_factory):
    """Token ids are cached in a private folder, not in the repo's data_cache/ (for a module of tests:
    `pytestmark = pytest.mark.usefixtures("private_cache")`)."""
    import data
    mp = pytest.MonkeyPatch()
    path = tmp_path_factory.mktemp("mnemo_cache")
    mp.setattr(data, "CACHE", path)
    yield path
    mp.undo()
