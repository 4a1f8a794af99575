"""Parley: a real-time voice server (streaming speech-to-text and text-to-speech)."""

__version__ = "0.1.0"
