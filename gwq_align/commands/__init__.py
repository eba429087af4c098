"""One module per gwq-align command; each exposes `main`."""
