"""Fact sources: each reads one kind of object (model, datamodule, weights, checkpoint) and returns facts."""
