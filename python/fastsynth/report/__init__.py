"""Reports: plots and summaries written next to a stage's outputs."""
