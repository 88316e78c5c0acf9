"""``python -m agents.fakellm --host 127.0.0.1 --port 9100``"""

from __future__ import annotations

import argparse

from agents.fakellm.server import serve


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
    args = parser.parse_args(argv)
    serve(
        args.host,
        args.port,
        first_token_delay=args.first_token_delay,
        chunk_delay=args.chunk_delay,
        log_level=args.log_level,
    )


if __name__ == "__main__":
    main()
