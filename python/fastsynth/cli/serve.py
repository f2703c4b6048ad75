"""``fastsynth serve``: an OpenAI-compatible /v1/chat/completions server over the local model."""
from __future__ import annotations

import argparse
import os
import sys

from fastsynth.cli.local_options import add_kernel_options, kernel_kwargs


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "serve", help="serve the local model over an OpenAI-compatible HTTP API",
        description="Serve POST /v1/chat/completions and GET /v1/models over fastsynth's own "
                    "Llama (default: the embedded SmolLM2-135M-Instruct). Concurrent requests "
                    "are decoded together in batches.")
    p.add_argument("--model", default=None, help=".gguf file or HF checkpoint folder "
                                                  "(default: embedded SmolLM2-135M-Instruct)")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=8000, help="port (default 8000)")
    p.add_argument("--batch-size", type=int, default=16, help="requests decoded together")
    p.add_argument("--batch-window", type=float, default=0.02,
                   help="seconds to wait for more requests before decoding (default 0.02)")
    p.add_argument("--threads", type=int, default=None, help="CPU threads (default: all cores)")
    p.add_argument("--dtype", default="float32", help="float32 (default), bfloat16, float16")
    p.add_argument("--name", default=None, help="model id to report (default: file stem)")
    add_kernel_options(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    # Shared CPUs: sleeping (not spinning) OpenMP workers keep 2-thread matmuls fast when other
    # processes compete for the cores. Must be set before torch loads.
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    from aiohttp import web

    from fastsynth.llm.local import LocalGenerator
    from fastsynth.llm.server import BatchingServer

    gen = LocalGenerator(args.model, dtype=args.dtype, threads=args.threads,
                         batch_size=args.batch_size, name=args.name,
                         **kernel_kwargs(args))
    server = BatchingServer(gen, max_batch=args.batch_size, batch_window=args.batch_window)

    app = server.app()

    async def announce(_: web.Application) -> None:
        print(f"fastsynth serve: {gen.model_name} on http://{args.host}:{args.port}/v1",
              file=sys.stderr, flush=True)

    app.on_startup.append(announce)
    web.run_app(app, host=args.host, port=args.port, print=None,
                handle_signals=True, access_log=None)
    return 0
