"""The `sentiment` transformer: texts in, 3-class probabilities, label and entropy out."""
