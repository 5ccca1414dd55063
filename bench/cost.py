"""What a million images cost on AWS Lambda: ``python -m bench.cost [--build-dir DIR]``.

Each function's warm handler time is measured here (``bench.cold_start``'s fresh interpreters, then a few warm
invocations: an image upload, a result query, a collect batch, an infer batch of 8 real photos), on one core, as
Lambda gives one vCPU at 1,769 MB. The model multiplies by the template's memory sizes and batch sizes:

- upload: one invocation per image (512 MB); query: ``--queries-per-image`` range queries (512 MB);
- infer: one invocation per ``--infer-batch`` images (1,769 MB), each as long as the measured batch of 8 scaled
  per image; collect: one invocation per ``--collect-batch`` results (512 MB), scaled per result;
- API Gateway HTTP API requests: the uploads and the queries. Lambda bills each invocation by the millisecond,
  rounded up.

Prices are parameters, defaulting to the public list prices for x86 in us-east-1 read on the date in ``PRICES_AS_OF``
(Lambda $0.0000166667 per GB-second and $0.20 per million requests; HTTP API $1.00 per million requests, first 300
million a month). Not included: the Kafka cluster (MSK or your own), the event-source pollers in provisioned mode,
the database, S3 storage and requests, data transfer, the free tier. Measured time is this machine's, not Lambda's.
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path
from typing import Any

from bench import cold_start
from bench.common import save_json, table

PRICES_AS_OF = "2026-12-05"
MEMORY_GB = {"upload": 0.5, "query": 0.5, "collect": 0.5, "infer": 1.769}  # template.yaml MemorySize / 1024
MEASURED_RECORDS = {"upload": 1, "query": 1, "collect": 2, "infer": 8}  # per measured invocation


def model(
    warm_s: dict[str, float], images: int, infer_batch: int, collect_batch: int, queries_per_image: float,
    gb_s_price: float, request_price: float, http_price: float,
) -> dict[str, Any]:  # fmt: skip
    """Lambda GB-seconds, requests and dollars per function for ``images`` images."""
    per_record = {name: warm_s[name] / MEASURED_RECORDS[name] for name in warm_s}
    invocations = {
        "upload": images, "query": images * queries_per_image,
        "infer": images / infer_batch, "collect": images / collect_batch,
    }  # fmt: skip
    records = {"upload": images, "query": images * queries_per_image, "infer": images, "collect": images}
    rows = {}
    for name in ("upload", "infer", "collect", "query"):
        per_invocation_ms = math.ceil(records[name] * per_record[name] * 1000 / invocations[name])  # billed per 1 ms
        gb_s = invocations[name] * per_invocation_ms / 1000 * MEMORY_GB[name]
        dollars = gb_s * gb_s_price + invocations[name] / 1e6 * request_price
        rows[name] = {"invocations": round(invocations[name]), "gb_s": round(gb_s, 1), "usd": round(dollars, 2),
                      "handler_ms_per_record": round(per_record[name] * 1000, 2)}  # fmt: skip
    http = (invocations["upload"] + invocations["query"]) / 1e6 * http_price
    total = sum(r["usd"] for r in rows.values()) + http
    return {"images": images, "functions": rows, "api_gateway_usd": round(http, 2), "total_usd": round(total, 2)}


def report(out: dict[str, Any]) -> str:
    rows = [(name, f"{r['handler_ms_per_record']:.2f} ms", f"{r['invocations']:,}", f"{r['gb_s']:,.0f}",
             f"${r['usd']:,.2f}") for name, r in out["functions"].items()]  # fmt: skip
    rows.append(("API Gateway", "", "", "", f"${out['api_gateway_usd']:,.2f}"))
    rows.append(("total", "", "", "", f"${out['total_usd']:,.2f}"))
    title = (
        f"Cost of {out['images']:,} images on Lambda (list prices of {PRICES_AS_OF}; Kafka, database, S3 not included)"
    )
    return table(title, ["function", "warm time per record", "invocations", "GB-s", "cost"], rows)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--build-dir", type=Path, help="measure the `sam build` artifacts on CPython 3.12")
    parser.add_argument("--images", type=int, default=1_000_000)
    parser.add_argument("--infer-batch", type=int, default=16, help="template InferBatchSize")
    parser.add_argument("--collect-batch", type=int, default=100, help="template CollectBatchSize")
    parser.add_argument("--queries-per-image", type=float, default=1 / 8)
    parser.add_argument("--gb-s-price", type=float, default=0.0000166667)
    parser.add_argument("--request-price", type=float, default=0.20, help="per million Lambda requests")
    parser.add_argument("--http-price", type=float, default=1.00, help="per million HTTP API requests")
    parser.add_argument("--warm", type=int, default=5, help="warm invocations measured per interpreter")
    args = parser.parse_args(argv)
    measured = cold_start.run(3, "efficientnet_lite0", args.build_dir, warm=args.warm)
    warm_s = {name: float(r["warm_s"]) for name, r in measured.items()}
    out = model(warm_s, args.images, args.infer_batch, args.collect_batch, args.queries_per_image,
                args.gb_s_price, args.request_price, args.http_price)  # fmt: skip
    out["parameters"] = {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()}
    out["prices_as_of"] = PRICES_AS_OF
    print(report(out))
    save_json("cost", out)
    return out


if __name__ == "__main__":
    main()
