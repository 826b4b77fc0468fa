"""Schemathesis hooks for the admin API run in .ci/run.

`PUT /config` also takes the admin API's own settings. A generated valid body that set them
would replace the run's token or lower its rate limit, and every later request would be
refused (403, 429): documented answers, but nothing left to test. Valid (positive) bodies
keep their perf-core fields and lose the `admin_*` ones, so they stay valid; invalid
(negative) bodies are left whole, since the API refuses them all or nothing.
"""

import schemathesis
from schemathesis import GenerationMode


@schemathesis.hook
def map_case(context, case):
    operation = case.operation
    if (
        operation.method.upper() == "PUT"
        and operation.path == "/config"
        and isinstance(case.body, dict)
        and case.meta is not None
        and case.meta.generation.mode == GenerationMode.POSITIVE
    ):
        case.body = {k: v for k, v in case.body.items() if not k.startswith("admin_")}
    return case
