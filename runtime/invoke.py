"""``python -m runtime.invoke FUNCTION --event FILE``: one invocation, like ``sam local invoke``.

The function is looked up in ``template.yaml``; its template environment is applied under the caller's.
The handler's return value is printed as JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from .lambda_event import LambdaContext
from .loader import load_handler, load_shutdown
from .local import ROOT, apply_environment, parameters_from_environment
from .logs import configure_logging
from .template import load_template


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m runtime.invoke", description=__doc__.splitlines()[0])
    p.add_argument("function", help="logical id in the template, e.g. CollectSelfManagedFunction")
    p.add_argument("--event", required=True, help="event JSON file ('-' for stdin)")
    p.add_argument("--template", default=str(ROOT / "template.yaml"))
    p.add_argument("--param", action="append", default=[], metavar="NAME=VALUE")
    args = p.parse_args(argv)
    configure_logging()
    user_env = dict(os.environ)
    overrides = parameters_from_environment(load_template(args.template), user_env)
    overrides.update(kv.split("=", 1) for kv in args.param)
    template = load_template(args.template, overrides)
    spec = template.function(args.function)
    apply_environment([spec], user_env)
    text = sys.stdin.read() if args.event == "-" else Path(args.event).read_text()
    handler = load_handler(spec)
    try:
        result = handler(json.loads(text), LambdaContext.for_function(spec))
    finally:
        shutdown = load_shutdown(spec)
        if shutdown is not None and not spec.routes:
            shutdown()
    sys.stdout.write(json.dumps(result, default=str) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
