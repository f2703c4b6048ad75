"""Synthetic question-answer data the SynthLLM way (Qin et al. 2025), with answers,
augmentation, evolution and quality assurance.

``synthesize(source, out, generator=..., config=SynthConfig(...))`` runs the whole
pipeline into a resumable run directory; the modules are usable on their own:
``level1``/``level2``/``level3`` (question writing), ``graph`` (the Level-3 concept
graph and walks), ``concepts`` (name normalisation), ``answers`` (answers and
self-consistency), ``evolve`` (Evol-Instruct), ``parse`` (robust output parsing),
``prompts`` (versioned templates), ``provenance`` (record schema).
"""
from fastsynth.synth.config import SynthConfig
from fastsynth.synth.graph import ConceptGraph, Walk
from fastsynth.synth.pipeline import synthesize
from fastsynth.synth.provenance import QA_SCHEMA, REJECT_SCHEMA, QARecord, Reject


def load_records(out: str):
    """All accepted records of a run directory as one Arrow table (schema ``QA_SCHEMA``)."""
    import json
    from pathlib import Path

    import pyarrow as pa
    import pyarrow.parquet as pq

    root = Path(out)
    parts = sorted(json.loads((root / "manifest.json").read_text())["parts"])
    tables = [pq.read_table(root / "qa" / f"{p}.parquet", schema=QA_SCHEMA) for p in parts
              if (root / "qa" / f"{p}.parquet").exists()]
    return pa.concat_tables(tables) if tables else QA_SCHEMA.empty_table()


__all__ = ["SynthConfig", "synthesize", "load_records", "ConceptGraph", "Walk", "QARecord", "Reject",
           "QA_SCHEMA", "REJECT_SCHEMA"]
