"""``python -m runtime.invoke FUNCTION --event FILE``: one invocation, like ``sam local invoke``.

The function is looked up in ``template.yaml`` and invoked the way every local trigger invokes it (its own
environment, Lambda's context, its ``Timeout``); the handler's return value is printed as JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from runtime.app import loops
from runtime.lambdafn.environment import ROOT, declared_names, function_environment, local_parameters
from runtime.lambdafn.placement import make_function
from runtime.logs import configure_logging
from runtime.template import load_template


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m runtime.invoke", description=__doc__.splitlines()[0])
    p.add_argument("function", help="logical id in the template, e.g. CollectSelfManagedFunction")
    p.add_argument("--event", required=True, help="event JSON file ('-' for stdin)")
    p.add_argument("--template", default=str(ROOT / "template.yaml"))
    p.add_argument("--param", action="append", default=[], metavar="NAME=VALUE")
    args = p.parse_args(argv)
    configure_logging()
    shell = dict(os.environ)
    overrides = dict(kv.split("=", 1) for kv in args.param)
    template = load_template(args.template, local_parameters(load_template(args.template), shell, overrides))
    spec = template.function(args.function)
    environment = function_environment(spec, shell, declared_names(template.functions))
    event = json.loads(sys.stdin.read() if args.event == "-" else Path(args.event).read_text())

    async def invoke() -> Any:
        function = make_function(spec, environment)
        try:
            return await function.invoke(event)
        finally:
            await function.stop()

    result = loops.run(invoke())
    sys.stdout.write(json.dumps(result, default=str) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
