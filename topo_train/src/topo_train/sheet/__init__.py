"""The cortical sheet of a run: its positions (built, loaded or swapped) and its figure."""
