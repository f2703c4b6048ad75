"""Whole jobs built from the stages below them (corpus -> quality -> ...), with the
files they write and the summaries that account for every record."""
