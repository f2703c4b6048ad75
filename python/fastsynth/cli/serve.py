"""``fastsynth serve``: an OpenAI-compatible server over the local model (docs/serving.md)."""
from __future__ import annotations

import argparse
import os
import sys

from fastsynth.cli.local_options import add_kernel_options, kernel_kwargs


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "serve", help="serve the local model over an OpenAI-compatible HTTP API",
        description="Serve POST /v1/chat/completions and /v1/completions (plain or streamed), "
                    "GET /v1/models and /health over fastsynth's own Llama (default: the "
                    "embedded SmolLM2-135M-Instruct). Requests are decoded by continuous "
                    "batching: a request joins the running batch at the next decode step. "
                    "Limits and error formats: docs/serving.md.")
    p.add_argument("--model", default=None, help=".gguf file or HF checkpoint folder "
                                                  "(default: embedded SmolLM2-135M-Instruct)")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=8000, help="port (default 8000)")
    p.add_argument("--max-batch", "--batch-size", dest="max_batch", type=int, default=16,
                   help="most requests decoding together (default 16)")
    p.add_argument("--max-queue", type=int, default=64,
                   help="most requests waiting to join the batch; beyond max-batch + "
                        "max-queue the server answers 429 (default 64)")
    p.add_argument("--max-body-bytes", type=int, default=4 * 1024 * 1024,
                   help="largest request body; larger ones get 413 (default 4 MiB)")
    p.add_argument("--max-prompt-tokens", type=int, default=None,
                   help="most prompt tokens per prompt, chat template included (default: the "
                        "model's context minus one)")
    p.add_argument("--request-timeout", type=float, default=None,
                   help="seconds a request may run before it ends with an error "
                        "(default: no limit)")
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
    from fastsynth.llm.server import OpenAIServer, ServerLimits

    limits = ServerLimits(max_batch=args.max_batch, max_queue=args.max_queue,
                          max_body_bytes=args.max_body_bytes,
                          max_prompt_tokens=args.max_prompt_tokens,
                          request_timeout=args.request_timeout)
    gen = LocalGenerator(args.model, dtype=args.dtype, threads=args.threads,
                         batch_size=args.max_batch, name=args.name, **kernel_kwargs(args))
    server = OpenAIServer(gen, limits)
    app = server.app()

    async def announce(_: web.Application) -> None:
        print(f"fastsynth serve: {gen.model_name} on http://{args.host}:{args.port}/v1",
              file=sys.stderr, flush=True)

    app.on_startup.append(announce)
    # handler_cancellation: a client that disconnects cancels its handler, which cancels its
    # rows in the decode batch
    web.run_app(app, host=args.host, port=args.port, print=None, handle_signals=True,
                access_log=None, handler_cancellation=True, shutdown_timeout=5.0)
    return 0
