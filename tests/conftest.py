import os
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

sys.path.insert(0, str(Path(__file__).parent))  # shared strategies

# The machine is small and shared: time per example is noise, not a failure.
settings.register_profile("default", deadline=None, suppress_health_check=[HealthCheck.too_slow])
# CI draws the same examples every run, so a red build always reproduces.
settings.register_profile("ci", parent=settings.get_profile("default"), derandomize=True, print_blob=True)
settings.load_profile("ci" if os.environ.get("CI") == "true" else "default")


@pytest.fixture(scope="session")
def fashion():
    """The real Fashion-MNIST (Debian's dataset-fashion-mnist): fails in CI if missing, skips elsewhere."""
    from shufflesearch.accuracy.datasets import DatasetError, load_dataset

    try:
        return load_dataset("fashion-mnist")
    except DatasetError as exc:
        message = f"Fashion-MNIST is not installed ({exc}); apt-get install dataset-fashion-mnist"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)


@pytest.fixture(scope="session")
def postgres_url():
    """A real PostgreSQL server (Debian's postgresql) for the tests that claim distribution."""
    from servers import PostgresServer, require

    from shufflesearch.accuracy.datasets.fashion_mnist import FASHION_MNIST_DIR

    require(FASHION_MNIST_DIR.exists(), "Fashion-MNIST not installed (Debian package dataset-fashion-mnist)")
    server = PostgresServer()
    try:
        yield server.start()
    finally:
        server.stop()


def pytest_collection_modifyitems(config, items):
    """`@pytest.mark.gpu` tests skip, saying why, where torch sees no CUDA GPU (torch imported only if one is marked)."""
    marked = [item for item in items if item.get_closest_marker("gpu")]
    if not marked:
        return
    import torch

    if torch.cuda.is_available():
        return
    build = f"CUDA {torch.version.cuda} build" if torch.version.cuda else "CPU-only build"
    skip = pytest.mark.skip(reason=f"needs a CUDA GPU; torch {torch.__version__} ({build}) sees none")
    for item in marked:
        item.add_marker(skip)
