"""The stages of the pipeline: originals, gold retrains, unlearning cells, evaluation."""
