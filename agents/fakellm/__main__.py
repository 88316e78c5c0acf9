"""``python -m agents.fakellm --host 127.0.0.1 --port 9100``"""

from __future__ import annotations

import argparse
import json

from agents.fakellm.server import serve
from agents.fakellm.state import Chaos


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m agents.fakellm",
        description="Fake OpenAI/Anthropic/Gemini/Ollama server for tests and benchmarks.",
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=9100)
    parser.add_argument(
        "--first-token-delay", type=float, default=0.0, help="seconds before the first chunk"
    )
    parser.add_argument("--chunk-delay", type=float, default=0.0, help="seconds between chunks")
    parser.add_argument("--log-level", default="warning")
    parser.add_argument(
        "--chaos",
        type=_chaos,
        default=None,
        help='global fault rates as JSON, e.g. \'{"rates": {"500": 0.1, "disconnect": 0.05}, '
        '"seed": 1}\'',
    )
    args = parser.parse_args(argv)
    serve(
        args.host,
        args.port,
        first_token_delay=args.first_token_delay,
        chunk_delay=args.chunk_delay,
        log_level=args.log_level,
        chaos=args.chaos,
    )


def _chaos(text: str) -> Chaos:
    try:
        return Chaos.parse(json.loads(text))
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


if __name__ == "__main__":
    main()
