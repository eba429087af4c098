"""One module per gwq-data command; each exposes `main`."""
