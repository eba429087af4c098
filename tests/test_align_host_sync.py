"""gwq_align/host_sync.py: batches keep their host position_ids, and the packed-row questions are
answered from them without reading the device tensor.

"meta" tensors stand in for GPU ones: they have no data, so any read of their values on the host
(`.all()`, `.cpu()`, `.item()`) raises, which is exactly the wait we want gone."""

import pytest
import torch

from gwq_align import attention, host_sync

PACKED = torch.tensor([[0, 1, 2, 0, 1, 0, 1, 2, 3]])
SINGLE = torch.arange(9)[None]


@pytest.fixture()
def patched(monkeypatch):
    from swift.dataloader import dispatcher, shard
    from transformers import masking_utils

    for module, name in ((shard, "to_device"), (dispatcher, "to_device"), (masking_utils, "find_packed_sequence_indices")):
        monkeypatch.setattr(module, name, getattr(module, name))  # restored after the test
    monkeypatch.setenv("GWQ_ASYNC_COPIES", "1")
    host_sync.install()
    return shard, masking_utils


def test_batch_copy_keeps_the_host_position_ids(patched):
    shard, _ = patched
    batch = {"input_ids": torch.arange(9)[None], "position_ids": PACKED.clone(), "labels": torch.arange(9)[None]}
    out = shard.to_device(batch, "meta")
    assert out["position_ids"].device.type == "meta" and out["input_ids"].device.type == "meta"
    assert host_sync.host_copy(out["position_ids"]) is batch["position_ids"]
    assert host_sync.host_copy(out["input_ids"]) is None  # only position_ids are needed on the host
    same = shard.to_device(batch, "cpu")  # no copy made: nothing attached
    assert same["position_ids"] is batch["position_ids"] and host_sync.host_copy(same["position_ids"]) is None


@pytest.mark.parametrize("pos", [PACKED, SINGLE], ids=["packed", "one dialogue"])
def test_packed_indices_from_the_host_copy(patched, pos):
    shard, masking_utils = patched
    expected = masking_utils.find_packed_sequence_indices.__wrapped__(pos)
    device_pos = shard.to_device({"position_ids": pos.clone()}, "meta")["position_ids"]
    got = masking_utils.find_packed_sequence_indices(device_pos)  # would raise if it read the meta tensor
    if expected is None:
        assert got is None
    else:
        assert got.device.type == "meta" and got.shape == expected.shape
        assert torch.equal(host_sync.to_device_like(expected, torch.empty(0)), expected)
    with pytest.raises((RuntimeError, NotImplementedError)):  # the proof that the meta stand-in cannot be read
        masking_utils.find_packed_sequence_indices.__wrapped__(torch.empty_like(device_pos))


def test_varlen_segments_from_the_host_copy(patched):
    shard, _ = patched
    device_pos = shard.to_device({"position_ids": PACKED.clone()}, "meta")["position_ids"]
    cu, longest = attention.segments(device_pos)
    assert cu.device.type == "meta" and cu.shape == (4,) and cu.dtype == torch.int32 and longest == 4
    assert attention.segments(PACKED)[0].tolist() == [0, 3, 5, 9]  # same maths on the host copy


def test_off_unless_asked(monkeypatch):
    from swift.dataloader import shard
    from transformers import masking_utils

    monkeypatch.setattr(shard, "to_device", shard.to_device)
    monkeypatch.setattr(masking_utils, "find_packed_sequence_indices", masking_utils.find_packed_sequence_indices)
    monkeypatch.delenv("GWQ_ASYNC_COPIES", raising=False)
    before = shard.to_device, masking_utils.find_packed_sequence_indices
    host_sync.install()
    assert (shard.to_device, masking_utils.find_packed_sequence_indices) == before
