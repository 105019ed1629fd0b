"""Schemathesis hooks for SchemathesisTests (loaded through SCHEMATHESIS_HOOKS).

Two constraints of the API depend on the cluster's state, which no schema can state; these hooks
keep schema-valid values valid for the state at hand, changing nothing a check judges:

- `min_revision` beyond the cluster's current revision is refused at once with 400
  `future_revision` (the unit tests cover it). A valid value (digits, at most 2^63-1) is mapped to
  a revision every cluster has (0 or 1), so it stays valid and is never a future one.
- An `Idempotency-Key` names one submission: sent again with another body it is 422 (documented).
  A valid key (1-255 printable ASCII) gets a fresh suffix, so it stays valid and names this
  request only, as a client's key does.

- `continue` is a token only the server issues (a page's `continue`): one made up is refused
  with 400, as Kubernetes refuses one. A value that is not such a token is dropped (the first
  page), so the listing is still tested; tokens from real pages (stateful links) are kept.

Values that are not valid (negative tests) are left exactly as generated.
"""
import base64
import os
import binascii
import re
import uuid
import zlib

import schemathesis

_REVISION = re.compile(r"[0-9]+")
_KEY = re.compile(r"[!-~]{1,255}")


def _issued_token(value):
    if not isinstance(value, str) or value == "":
        return True
    try:
        plain = base64.urlsafe_b64decode(value + "=" * (-len(value) % 4)).decode("utf-8")
    except (binascii.Error, ValueError, UnicodeDecodeError):
        return False
    parts = plain.split(":", 2)
    return len(parts) == 3 and parts[0] == "v1" and parts[1].isdigit() and int(parts[1]) > 0 and parts[2] != ""


@schemathesis.hook
def before_call(context, case, **kwargs):
    _keep_members(case)
    _find_nodes(case)
    _bound_streams(case)
    query = case.query
    if query:
        if "continue" in query and not _issued_token(query["continue"]):
            del query["continue"]
        value = query.get("min_revision")
        if isinstance(value, bool):
            pass
        elif isinstance(value, int) and 0 <= value < 2**63:
            query["min_revision"] = value % 2
        elif isinstance(value, str) and _REVISION.fullmatch(value) and int(value) < 2**63:
            query["min_revision"] = str(int(value) % 2)
    headers = case.headers
    if headers:
        for name in list(headers):
            if name.lower() == "idempotency-key":
                key = headers[name]
                if isinstance(key, str) and _KEY.fullmatch(key):
                    headers[name] = key[:238] + "-" + uuid.uuid4().hex[:16]



# Membership changes are real: a removal or promotion the fuzzer guesses right (ids 1..3 are the
# founding masters) would take a master out of the cluster under test, and every learner it adds
# would stay. So a valid member id in a path becomes one no member has (404), and a valid new
# member's rpc address becomes one a member already has (409 member_exists, documented): the
# endpoints' validation and error answers are still exercised, the cluster stays as it is.
# ORCH_SCHEMATHESIS_MEMBER_RPC (set by SchemathesisTests) is an rpc address of the cluster.
_MEMBER_PATH = re.compile(r"^/api/v1/cluster/members/\{id\}(?:/promote)?$")
_NO_MEMBER = str(2**53 - 1)
_PORT = r"(?:[1-9][0-9]{0,3}|[1-5][0-9]{4}|6[0-4][0-9]{3}|65[0-4][0-9]{2}|655[0-2][0-9]|6553[0-5])"
_HOST_PORT = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,252}:" + _PORT)


def _keep_members(case):
    path = getattr(case, "path", "")
    if _MEMBER_PATH.match(path) and case.path_parameters:
        value = case.path_parameters.get("id")
        if isinstance(value, str) and value.isdigit() or isinstance(value, int) and not isinstance(value, bool):
            case.path_parameters["id"] = _NO_MEMBER
    if path == "/api/v1/cluster/members" and case.method.upper() == "POST":
        body = case.body
        taken = os.environ.get("ORCH_SCHEMATHESIS_MEMBER_RPC")
        if taken and isinstance(body, dict) and isinstance(body.get("rpc_address"), str) \
                and _HOST_PORT.fullmatch(body["rpc_address"]):
            body["rpc_address"] = taken


# Node ids are names the workers choose, so a generated one never names a node: every node
# route would answer 404. SchemathesisTests joins a node that runs nothing
# (ORCH_SCHEMATHESIS_NODE); half of the generated ids (by a hash of the value, so a seed replays)
# become its id, so reads, drain, cordon, uncordon and delete also meet a node that exists, and
# the other half still meet 404. Any string is a valid id, so nothing here turns a negative test
# into a positive one.
_NODE_PATH = re.compile(r"^/api/v1/nodes/\{id\}(?:/(?:drain|cordon|uncordon))?$")


def _find_nodes(case):
    node = os.environ.get("ORCH_SCHEMATHESIS_NODE")
    path = getattr(case, "path", "")
    if not node or not _NODE_PATH.match(path) or not case.path_parameters:
        return
    value = case.path_parameters.get("id")
    if isinstance(value, str) and zlib.crc32(value.encode("utf-8", "surrogatepass")) % 2 == 0:
        case.path_parameters["id"] = node


# An event stream never ends by itself, so a request/response fuzzer could not read one: every
# request to it gets timeout_seconds=1 (a valid value for a valid one, or added when absent), so
# the stream answers, streams for a second, and ends. Invalid values are left for the 400.
def _bound_streams(case):
    if getattr(case, "path", "") != "/api/v1/events":
        return
    if case.query is None:
        case.query = {}
    value = case.query.get("timeout_seconds")
    if value is None:
        case.query["timeout_seconds"] = 1
    elif isinstance(value, bool):
        pass
    elif isinstance(value, int) and 1 <= value <= 86400:
        case.query["timeout_seconds"] = 1
    elif isinstance(value, str) and value.isdigit() and 1 <= int(value) <= 86400:
        case.query["timeout_seconds"] = "1"
