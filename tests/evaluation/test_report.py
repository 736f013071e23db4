"""evaluation/report.py and evaluation/outputs.py: the summary of per-case rows, JSON without NaN."""
import json
import math
from pathlib import Path

from evaluation.outputs import json_ready
from evaluation.report import summarize


def test_summarize_and_json_ready():
    rows = [{"case": "a", "class": 1, "dice": 0.8, "jaccard": 0.7, "hd95": 2.0, "asd": 1.0,
             "empty_pred": False, "empty_gt": False},
            {"case": "b", "class": 1, "dice": 0.0, "jaccard": 0.0, "hd95": math.nan, "asd": math.nan,
             "empty_pred": True, "empty_gt": False}]
    stats = summarize(rows, 2)["class_1"]
    assert stats["dice"] == {"mean": 0.4, "std": 0.4, "cases": 2}
    assert stats["hd95"] == {"mean": 2.0, "std": 0.0, "cases": 1}
    assert stats["empty_predictions"] == 1 and stats["flagged_cases"] == ["b"]
    text = json.dumps(json_ready({"x": [math.nan, 1.0], "p": Path("a/b"), "n": None}))
    assert json.loads(text) == {"x": [None, 1.0], "p": "a/b", "n": None}
