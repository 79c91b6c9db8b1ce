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
