"""The tf-idf + logistic-regression baseline the fine-tuned model is measured against, on the same split."""

from __future__ import annotations

import numpy as np
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline, make_pipeline


def fit_baseline(texts: list[str], labels: np.ndarray, seed: int) -> Pipeline:
    """Word uni- and bigram tf-idf (sublinear term frequency) into multinomial logistic regression."""
    pipeline = make_pipeline(
        TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True, min_df=1),
        LogisticRegression(max_iter=2000, random_state=seed),
    )
    pipeline.fit(texts, labels)
    return pipeline


def baseline_predict(pipeline: Pipeline, texts: list[str]) -> np.ndarray:
    """Predicted class indices (in the training label order) for each text."""
    return np.asarray(pipeline.predict(texts), dtype=np.int64)
