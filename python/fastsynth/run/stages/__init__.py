"""The stages of ``fastsynth run``, one module each, in the order the data flows.

Each module defines its stage's frozen config dataclass and a ``STAGE``
(:class:`fastsynth.run.stage.Stage`); :mod:`fastsynth.run.pipeline` lists them.
"""
