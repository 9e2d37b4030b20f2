"""Schemathesis hooks for scripts/schemathesis.

Only positive (schema-valid) cases are touched, and no check is switched off. They cover:

- the rules of Mercado's API that JSON Schema cannot state, each written in its operation's
  description in /openapi.json: a transfer is not to oneself, an order names a product once, a
  reply answers a message of the same conversation (only a linked id can be one);
- state: an `Idempotency-Key` names one request, so the same generated key sent again with
  another body is refused, rightly (422 `idempotency_key_reused`): each case gets a key of its own;
- a generator quirk of Schemathesis 4.32: its coverage phase fills an optional header whose
  pattern has more than one part (`x-read-after-lsn`, `0/16B3748`) with `0`, which the pattern
  refuses; such a case is not schema-valid, so it is not sent as one.
"""

import itertools
import os
import re

import schemathesis

CALLER_ID = int(os.environ["MERCADO_FUZZ_CALLER_ID"])
_keys = itertools.count()


def _is_positive(case) -> bool:
    meta = case.meta
    return meta is None or meta.generation.mode.is_positive


def _headers_match_their_patterns(case) -> bool:
    sent = {name.lower(): value for name, value in (case.headers or {}).items()}
    for parameter in case.operation.headers:
        schema = parameter.definition.get("schema") or {}
        pattern = schema.get("pattern")
        value = sent.get(parameter.name.lower())
        if isinstance(pattern, str) and isinstance(value, str) and not re.search(pattern, value):
            return False
    return True


@schemathesis.hook
def filter_case(context, case) -> bool:
    if not _is_positive(case):
        return True
    if not _headers_match_their_patterns(case):
        return False
    if not isinstance(case.body, dict):
        return True
    operation = (case.operation.method.upper(), case.operation.path)
    body = case.body
    if operation == ("POST", "/transfers"):
        return body.get("to_user_id") != CALLER_ID
    if operation == ("POST", "/orders"):
        items = body.get("items")
        if isinstance(items, list):
            ids = [item.get("product_id") for item in items if isinstance(item, dict)]
            return len(ids) == len({repr(id) for id in ids})
    if operation == ("POST", "/conversations/{id}/messages"):
        return body.get("reply_to_id") is None
    return True


@schemathesis.hook
def map_case(context, case):
    if not _is_positive(case) or not case.headers:
        return case
    for name, value in list(case.headers.items()):
        if name.lower() == "idempotency-key" and isinstance(value, str) and value:
            suffix = f"-{next(_keys)}"
            case.headers[name] = value[: 255 - len(suffix)] + suffix
    return case
