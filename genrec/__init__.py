"""Shared logic of the generative sequential-recommendation pipeline.

The DVC stages under ``stages/`` are thin command-line wrappers around this package:
``datasets`` (download), ``preprocess``, ``split``, ``model`` and ``training`` (GPT-2),
``strategies`` (generation), ``metrics`` and ``report``.
"""
