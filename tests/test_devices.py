"""Device names: checked before any work, one line for a GPU that is not there, GPUs shared out to workers."""

from __future__ import annotations

import pytest
import torch

from shufflesearch.accuracy import devices
from shufflesearch.accuracy.devices import DeviceUnavailable, device_kind, resolve_device, worker_devices
from shufflesearch.errors import MachineError, UsageError


def test_cpu_and_auto_resolve_on_any_machine():
    assert resolve_device("cpu") == resolve_device("CPU ") == "cpu"
    auto = resolve_device("auto")
    assert auto == ("cuda:0" if torch.cuda.is_available() else "mps" if devices._mps_available() else "cpu")
    assert worker_devices("cpu", 3) == ["cpu"] * 3


@pytest.mark.parametrize("name", ["gpu", "cuda:", "cuda:-1", "cpu:0", "mps:1", "", "cuda:N"])
def test_a_name_that_is_no_device_is_a_usage_error(name):
    with pytest.raises(UsageError, match=r"is not one of auto, cpu, cuda, cuda:N, mps; e\.g\. --device auto") as info:
        resolve_device(name)
    assert "\n" not in str(info.value) and info.value.exit_code == 2


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a CUDA GPU")
@pytest.mark.parametrize("name", ["cuda", "cuda:0", "cuda:3"])
def test_a_missing_gpu_is_one_line_naming_what_torch_sees(name):
    with pytest.raises(DeviceUnavailable, match=rf"device '{name}' is not available: torch sees cpu") as info:
        resolve_device(name)
    assert isinstance(info.value, MachineError) and info.value.exit_code == 1
    assert "\n" not in str(info.value) and torch.__version__ in str(info.value)
    with pytest.raises(DeviceUnavailable):
        worker_devices(name, 2)


def test_gpus_are_shared_out_round_robin(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 3)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda i=0: "Example GPU")
    assert worker_devices("auto", 5) == ["cuda:0", "cuda:1", "cuda:2", "cuda:0", "cuda:1"]
    assert worker_devices("cuda", 2) == ["cuda:0", "cuda:1"]
    assert worker_devices("cuda:2", 2) == ["cuda:2", "cuda:2"], "a named GPU is the one every worker uses"
    assert resolve_device("cuda") == "cuda:0" and resolve_device("auto") == "cuda:0"
    with pytest.raises(DeviceUnavailable, match=r"device 'cuda:3' is not available: torch sees cpu, cuda:0 \(Example"):
        resolve_device("cuda:3")
    with pytest.raises(UsageError, match="workers=0 must be a positive integer"):
        worker_devices("auto", 0)


def test_device_kind_is_what_a_cache_key_tells_apart():
    assert [device_kind(d) for d in ("cpu", "cuda:0", "cuda:7", "mps")] == ["cpu", "cuda", "cuda", "mps"]


def test_cli_refuses_a_missing_gpu_before_loading_data(monkeypatch):
    import io
    from contextlib import redirect_stderr

    from shufflesearch.accuracy import datasets
    from shufflesearch.cli import main

    if torch.cuda.is_available():
        pytest.skip("this machine has a CUDA GPU")
    monkeypatch.setattr(datasets, "load_dataset", lambda *a, **k: pytest.fail("loaded data before the device check"))
    for args in (["train", "--device", "cuda"], ["score", "--device", "cuda:1"], ["fidelity", "--device", "cuda"]):
        err = io.StringIO()
        with pytest.raises(SystemExit) as exit_info, redirect_stderr(err):
            main(args)
        assert exit_info.value.code == 1 and err.getvalue().count("\n") == 1, err.getvalue()
        assert "is not available: torch sees cpu" in err.getvalue()


def test_cli_refuses_an_unsupported_precision_before_loading_data(monkeypatch):
    import io
    from contextlib import redirect_stderr

    from shufflesearch.accuracy import datasets
    from shufflesearch.cli import main

    monkeypatch.setattr(torch.backends.mkldnn, "is_available", lambda: False)  # a CPU without native bf16
    monkeypatch.setattr(datasets, "load_dataset", lambda *a, **k: pytest.fail("loaded data before the precision check"))
    err = io.StringIO()
    with pytest.raises(SystemExit) as exit_info, redirect_stderr(err):
        main(["train", "--device", "cpu", "--precision", "bf16"])
    assert exit_info.value.code == 2 and err.getvalue().count("\n") == 1, err.getvalue()
    assert "needs a CPU with native bf16" in err.getvalue()


@pytest.mark.gpu
def test_a_gpu_that_is_there_resolves():
    assert resolve_device("cuda") == "cuda:0" == worker_devices("auto", 1)[0]
    info = devices.device_info("cuda:0")
    assert info["gpu"] and info["cuda"]
