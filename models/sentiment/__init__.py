"""The `sentiment` predictor: all-MiniLM-L6-v2 fine-tuned for 3-class news sentiment, exported to ONNX.

Entry points for the model build orchestrator are `models.sentiment.build.recipe` and `.build`.
"""
