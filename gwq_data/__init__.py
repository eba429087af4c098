"""gwq-data: make, check and package 古文翻译腔 (classical-Chinese translation tone) chat data."""

__version__ = "0.1.0"
