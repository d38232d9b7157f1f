"""One process without torchrun: no process group, and every collective is the identity."""

from __future__ import annotations

import pytest
import torch

from vitalmatch.learn import distributed


def test_one_process_needs_no_process_group(monkeypatch):
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    ddp, device = distributed.init("cpu")
    assert (ddp.rank, ddp.world, ddp.main) == (0, 1, True) and device == torch.device("cpu")
    assert not torch.distributed.is_initialized()
    x = torch.arange(3.0)
    assert distributed.sum_all(x, ddp, device) is x
    assert distributed.any_process(True, ddp, device) and not distributed.any_process(False, ddp, device)
    model = torch.nn.Linear(2, 1)
    with torch.no_grad():
        model.weight.fill_(0.5)
        model.bias.fill_(-2.0)
    assert distributed.checksum(model) == pytest.approx(-1.0)
    distributed.check_replicas(model, ddp, device)
    distributed.shutdown(ddp)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks a machine without CUDA")
def test_cuda_without_a_gpu_is_a_clear_error():
    with pytest.raises(ValueError, match="torch sees no CUDA GPU"):
        distributed.init("cuda")
