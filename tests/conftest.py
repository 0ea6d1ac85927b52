"""Shared pytest setup: quiet TensorFlow logs, the `slow` marker."""
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def pytest_configure(config):
    config.addinivalue_line("markers", "slow: long checks kept out of the default run")
