import os
import sys
from pathlib import Path

import pytest
import torch as th

# Make the shared test modules (envs, runs, probes) importable by name from every test module.
sys.path.insert(0, str(Path(__file__).parent))


# Every Ray process the tests start listens on 127.0.0.1 only (without this Ray binds the
# machine's network address); set before any Ray instance starts.
os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
# An address left in /tmp/ray/ray_current_cluster by a cluster that did not shut down (a killed test)
# would make every ``ray.init()`` without an address try to join it; "local" starts a new instance
# instead. Tests that join a cluster pass its address explicitly.
os.environ.setdefault("RAY_ADDRESS", "local")


@pytest.fixture
def one_torch_thread():
    """One torch intra-op thread for the test, restored after it. Small networks on a shared machine run
    faster on one thread than on contended ones, and a training run's course depends on the thread
    count (it changes float rounding), so a learning test pinned to one runs the same alone or in the suite."""
    threads = th.get_num_threads()
    th.set_num_threads(1)
    yield
    th.set_num_threads(threads)


@pytest.fixture(scope="session")
def ray_session():
    """One local Ray instance for all the tests that need one (starting one takes seconds), no dashboard.

    Tests that use it carry ``pytest.mark.xdist_group("ray")``, so that under ``--dist loadgroup`` they
    all run in one pytest worker and share it.
    """
    ray = pytest.importorskip("ray")
    if not ray.is_initialized():
        ray.init(num_cpus=4, include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()
