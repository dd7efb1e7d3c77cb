"""Start the Shuttle Lens app.

    python app.py                      # the demo match in assets/, indexed with the demo model
    python app.py --workspace DIR --model ADAPTERS --precision bf16 --host 127.0.0.1 --port 7860

The server listens on 127.0.0.1 only unless --host says otherwise, never makes a public share
link, serves files only from the workspace and assets/, and limits uploads to --max-upload.
"""
from __future__ import annotations

import argparse
import logging
import os
import sys

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # the app never calls home
os.environ.setdefault("HF_HUB_OFFLINE", "1")  # models load from folders or the local cache only

from core.config import PRECISIONS
from core.engine import DEFAULT_MODEL_DIR, Engine
from core.errors import ModelLoadError
from core.workspace import DEFAULT_WORKSPACE, DEMO_MATCH_DIR


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python app.py",
                                description="Shuttle Lens: ask a badminton match video in plain words.")
    p.add_argument("--model", default=str(DEFAULT_MODEL_DIR),
                   help="adapter folder, base folder or Hugging Face id (default: the demo model in assets/)")
    p.add_argument("--precision", choices=PRECISIONS, default="fp32")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    p.add_argument("--host", default="127.0.0.1", help="listen address (default: this machine only)")
    p.add_argument("--port", type=int, default=7860)
    p.add_argument("--workspace", default=str(DEFAULT_WORKSPACE),
                   help="folder for the stroke index, uploads, runs and exports (default: workspace/)")
    p.add_argument("--demo-match", default=str(DEMO_MATCH_DIR),
                   help="match indexed on first start when the index is empty (ShuttleSet layout: "
                        "<video>/setN.csv + setN.mp4; default: assets/demo-match)")
    p.add_argument("--no-demo", action="store_true", help="do not index the demo match on first start")
    p.add_argument("--max-upload", default="2gb", help="largest file a browser may upload (default 2gb)")
    return p.parse_args(argv)


def load_model(engine: Engine, args: argparse.Namespace) -> None:
    """The --model the app starts with (it goes on without one that cannot be loaded)."""
    try:
        engine.load(args.model, args.precision, args.device, trusted=True)
    except (ModelLoadError, ValueError) as err:
        logging.warning("starting without a model: %s", err)


def _report(done: int, total: int, what: str) -> None:
    if done == total or done % 50 == 0:
        logging.info("indexing the demo match: %s %d/%d", what, done, total)


def main(argv: list[str] | None = None) -> None:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    args = parse_args(argv)
    engine = Engine(args.workspace, demo_match=args.demo_match, demo_model=args.model)
    from ui import build_app, launch_kwargs  # gradio is slow to import; only the app needs it

    app = build_app(engine, demo_pending=True)
    # the model (torch, transformers) loads and the demo is indexed while the page already serves
    engine.start_demo(progress=_report, load=lambda: load_model(engine, args), index=not args.no_demo)
    app.queue(default_concurrency_limit=4)
    where = f"http://{args.host}:{args.port}"
    print(f"Shuttle Lens is running at {where} (workspace: {engine.workspace.root})", file=sys.stderr, flush=True)
    try:
        app.launch(**launch_kwargs(engine, args.host, args.port, args.max_upload))
    finally:
        if engine.runner is not None:
            engine.runner.shutdown()


if __name__ == "__main__":
    main()
