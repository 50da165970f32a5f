"""errorless: train image classifiers to zero training error and report double-labelled data."""

__version__ = "0.1.0"
