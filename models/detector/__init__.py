"""The mammography lesion detector: phantom generator (torch-free), model, training, export and build."""
