"""The tf-idf + logistic-regression baseline the fine-tuned model is measured against, on the same split.

Its regularisation strength C is chosen by cross-validation on the training part only, with folds grouped by
editorial (as the train/test split is), so the held-out sentences never influence the baseline.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GridSearchCV, GroupKFold
from sklearn.pipeline import Pipeline, make_pipeline

C_GRID: tuple[float, ...] = (0.1, 0.3, 1.0, 3.0, 10.0, 30.0, 100.0, 300.0, 1000.0)
CV_FOLDS = 5
CV_SCORING = "f1_macro"


@dataclass(frozen=True)
class TunedBaseline:
    """The baseline refitted on the whole training part with the C that cross-validated best.

    cv_scores: mean cross-validated macro-F1 per C (keys are C written with `repr`), on the training part only.
    """

    pipeline: Pipeline
    best_c: float
    cv_scores: dict[str, float]


def baseline_pipeline(seed: int, c: float = 1.0) -> Pipeline:
    """Word uni- and bigram tf-idf (sublinear term frequency) into multinomial logistic regression."""
    return make_pipeline(
        TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True, min_df=1),
        LogisticRegression(C=c, max_iter=2000, random_state=seed),
    )


def fit_baseline(
    texts: list[str],
    labels: np.ndarray,
    groups: list[str],
    seed: int,
    *,
    c_grid: tuple[float, ...] = C_GRID,
    folds: int = CV_FOLDS,
) -> TunedBaseline:
    """Tune C over `c_grid` by `folds`-fold cross-validation grouped by `groups` (editorial ids), scored by
    macro-F1, then refit on all of `texts`.

    The tf-idf vocabulary is fitted inside each fold, so no fold sees its validation sentences' words.
    """
    search = GridSearchCV(
        baseline_pipeline(seed),
        {"logisticregression__C": list(c_grid)},
        scoring=CV_SCORING,
        cv=GroupKFold(n_splits=folds),
        refit=True,
        n_jobs=1,
    )
    search.fit(texts, labels, groups=groups)
    scores = {
        repr(float(c)): float(score)
        for c, score in zip(search.cv_results_["param_logisticregression__C"], search.cv_results_["mean_test_score"])
    }
    return TunedBaseline(search.best_estimator_, float(search.best_params_["logisticregression__C"]), scores)


def baseline_predict(pipeline: Pipeline, texts: list[str]) -> np.ndarray:
    """Predicted class indices (in the training label order) for each text."""
    return np.asarray(pipeline.predict(texts), dtype=np.int64)
