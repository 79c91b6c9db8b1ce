"""Accuracy estimates: proxy training on real data, and training-free scores."""
