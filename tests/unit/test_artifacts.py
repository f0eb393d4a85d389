"""Model files are byte-reproducible: their hash feeds the cells' cache keys."""

from __future__ import annotations

import torch

from benchmark.runner.artifacts import file_hash, load_state, save_state


def test_equal_weights_give_equal_bytes_whatever_the_file_name(tmp_path):
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.ReLU(), torch.nn.Linear(3, 2))
    save_state(tmp_path / "a.pt", model)
    save_state(tmp_path / "sub" / "seed7.pt", model)
    assert file_hash(tmp_path / "a.pt") == file_hash(tmp_path / "sub" / "seed7.pt")
    clone = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.ReLU(), torch.nn.Linear(3, 2))
    load_state(tmp_path / "sub" / "seed7.pt", clone)
    assert all(torch.equal(p, q) for p, q in zip(model.parameters(), clone.parameters(), strict=True))
    assert not list(tmp_path.rglob(".*.tmp"))  # no temp file left behind
