"""Run by the build tools' python (.venv-tools: aws-sam-translator pins its own pydantic, so it never shares the
runtime's venv): reads ``{"template": ..., "parameters": ...}`` as JSON on stdin, prints the SAM translation."""

import json
import sys

from samtranslator.translator.transform import transform  # type: ignore[import-untyped]


class _AwsManagedPolicies:
    """Resolves AWS managed policy names to their ARNs, as SAM's loader does with IAM."""

    def load(self) -> dict[str, str]:
        return {
            name: f"arn:aws:iam::aws:policy/service-role/{name}"
            for name in ("AWSLambdaBasicExecutionRole", "AWSLambdaMSKExecutionRole", "AWSLambdaVPCAccessExecutionRole")
        }


if __name__ == "__main__":
    given = json.load(sys.stdin)
    json.dump(transform(given["template"], given["parameters"], _AwsManagedPolicies()), sys.stdout)
