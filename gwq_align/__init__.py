"""gwq-align: train (SFT, DPO), compare, serve and publish translation-tone models on ms-swift."""

__version__ = "0.1.0"
