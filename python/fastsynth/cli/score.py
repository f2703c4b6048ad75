"""fastsynth score (being written)."""


def register(sub):
    p = sub.add_parser("score", help="score a corpus for quality")
    p.set_defaults(func=lambda args: 0)
