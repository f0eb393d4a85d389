"""docs/api.md's code blocks run, in order, in a folder holding only params.yaml (everything on the fly)."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pandas as pd
import pytest

from benchmark import api

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "api.md"


def code_blocks(text: str) -> list[str]:
    """The ```python blocks of a Markdown page, except those marked ```python notest."""
    return re.findall(r"^```python\n(.*?)^```", text, flags=re.S | re.M)


@pytest.mark.integration
def test_api_doc_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    shutil.copy(ROOT / "params.yaml", tmp_path / "params.yaml")
    monkeypatch.chdir(tmp_path)
    blocks = code_blocks(DOC.read_text())
    assert len(blocks) == 2
    scope: dict = {}
    for block in blocks:
        exec(compile(block, str(DOC), "exec"), scope)  # noqa: S102 (the documented example)
    out = scope["out"]
    assert set(out.scores) >= {"acc_forget", "acc_retain", "acc_test", "tow", "gap_forget", "js_forget_pop"}
    # the class protocol deletes whole classes: the gold retrain scores 0 on them
    assert (tmp_path / "runs" / "digits-mlp" / "gold").is_dir()
    again = scope["suite"].unlearn("finetune", protocol="class", seed=0, step=2, epochs=2)
    assert again.scores["tow"] == out.scores["tow"]  # seeded: same numbers, now from the cached models


def test_load_results_reads_and_types(tmp_path: Path):
    from benchmark.leaderboard.aggregate import RESULT_COLUMNS

    (tmp_path / "results").mkdir()
    rows = pd.DataFrame([{c: "" for c in RESULT_COLUMNS} for _ in range(2)])
    rows["suite"], rows["method"], rows["tow"], rows["step"] = "s", "finetune", ["0.5", "0.25"], [1, 2]
    rows["status"] = ["ok", "nan"]
    rows.to_csv(tmp_path / "results" / "s.csv", index=False)
    rows.iloc[:1].to_csv(tmp_path / "results" / "s_population.csv", index=False)  # not a result file
    df = api.load_results("s", root=tmp_path)
    assert list(df.columns) == list(RESULT_COLUMNS) and df.tow.tolist() == [0.5, 0.25]
    assert df.params_id.tolist() == ["finetune"] * 2 and df.status.tolist() == ["ok", "nan"]
    assert len(api.load_results(root=tmp_path)) == 2
    with pytest.raises(FileNotFoundError):
        api.load_results("nope", root=tmp_path)
