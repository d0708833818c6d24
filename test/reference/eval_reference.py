"""scikit-learn reference values for test/eval-metrics.test.ts.

Reads one JSON object from stdin and writes one to stdout:
  {"ap":   [{"y_true": [0|1, ...], "y_score": [float, ...]}, ...],
   "ndcg": [{"y_true": [gain, ...], "y_score": [float, ...], "k": int}, ...]}
->
  {"ap": [average_precision_score(y_true, y_score), ...],
   "ndcg": [ndcg_score([y_true], [y_score], k=k), ...],
   "versions": {"sklearn": ..., "numpy": ...}}
Floats travel as JSON doubles (shortest round-trip repr), so ties in the input stay ties here.
Needs numpy and scikit-learn.
"""
import json
import sys
import warnings

import numpy as np
import sklearn
from sklearn.metrics import average_precision_score, ndcg_score


def main() -> None:
    req = json.load(sys.stdin)
    out = {"ap": [], "ndcg": [], "versions": {"sklearn": sklearn.__version__, "numpy": np.__version__}}
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a warning (e.g. no positive label) means a bad test case
        for case in req.get("ap", []):
            y_true = np.asarray(case["y_true"], dtype=np.int64)
            y_score = np.asarray(case["y_score"], dtype=np.float64)
            out["ap"].append(float(average_precision_score(y_true, y_score)))
        for case in req.get("ndcg", []):
            y_true = np.asarray([case["y_true"]], dtype=np.float64)
            y_score = np.asarray([case["y_score"]], dtype=np.float64)
            out["ndcg"].append(float(ndcg_score(y_true, y_score, k=int(case["k"]))))
    json.dump(out, sys.stdout)


if __name__ == "__main__":
    main()
