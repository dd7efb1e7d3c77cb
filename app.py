"""Start the Shuttle Lens app: `python app.py [--model DIR] [--host H] [--port P]`."""
from __future__ import annotations

import argparse
import logging
import os
import sys

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # the app never calls home
os.environ.setdefault("HF_HUB_OFFLINE", "1")  # models load from folders or the local cache only

from core.config import PRECISIONS
from core.engine import DEFAULT_MODEL_DIR, Engine
from core.loader import ModelLoadError


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description="Shuttle Lens: ask a badminton match video in plain words.")
    p.add_argument("--model", default=str(DEFAULT_MODEL_DIR),
                   help="adapter folder, base folder or Hugging Face id (default: the demo model in assets/)")
    p.add_argument("--precision", choices=PRECISIONS, default="fp32")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    p.add_argument("--host", default="127.0.0.1", help="listen address (default: this machine only)")
    p.add_argument("--port", type=int, default=7860)
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    args = parse_args(argv)
    engine = Engine()
    try:
        engine.load(args.model, args.precision, args.device)
    except ModelLoadError as err:
        logging.warning("starting without a model: %s", err)
    from ui import build_app  # gradio is slow to import; only the app needs it

    print(f"Shuttle Lens is running at http://{args.host}:{args.port}", file=sys.stderr)
    build_app(engine).launch(server_name=args.host, server_port=args.port, share=False)


if __name__ == "__main__":
    main()
