"""Starting a run: the --pretrained file checks and the path comparisons of --resume."""

from __future__ import annotations

import pytest
import torch

from vitalmatch.learn import resume


def test_load_pretrained_unwraps_and_checks(tmp_path):
    w = {"conv1.weight": torch.zeros(2, 3, 1, 1)}
    torch.save({"state_dict": w}, tmp_path / "wrapped.pt")
    assert resume.load_pretrained(str(tmp_path / "wrapped.pt")).keys() == w.keys()
    torch.save({}, tmp_path / "empty.pt")
    with pytest.raises(ValueError, match="is not a state dict"):
        resume.load_pretrained(str(tmp_path / "empty.pt"))
    with pytest.raises(ValueError, match="does not exist"):
        resume.load_pretrained(str(tmp_path / "missing.pt"))


def test_paths_are_compared_as_files(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "a").write_text("x")
    (tmp_path / "b").write_text("x")
    (tmp_path / "c").write_text("y")
    assert resume.same_file("a", str(tmp_path / "sub" / ".." / "a"))
    assert not resume.same_file("a", "b")
    assert resume.same_file("gone", str(tmp_path / "gone"))  # missing: compared as resolved paths
    # --pretrained: both unset, or the same content; a file that moved away is not compared.
    assert resume.same_pretrained("", "") and not resume.same_pretrained("a", "")
    assert resume.same_pretrained("a", "b") and not resume.same_pretrained("a", "c")
    assert resume.same_pretrained(str(tmp_path / "moved_away.pt"), "a")
