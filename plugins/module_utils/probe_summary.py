# -*- coding: utf-8 -*-
# Copyright: meshlab.mtls contributors
# Apache License 2.0 (see LICENSE or https://www.apache.org/licenses/LICENSE-2.0)
"""Fold N classified requests from one source to one target into one probe result."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from collections import Counter

MAX_SAMPLES = 3


def summarize_probe(source, target, classified):
    """One probe row from a list of curl_result.classify_curl() results.

    ``statuses`` and ``curl_exits`` count requests per HTTP status / curl exit code (keys are
    text, as they would be after JSON anyway). ``result`` is success when every request succeeded,
    failure when none did, mixed otherwise; ``meaning`` is the most frequent meaning among failed
    requests (or among all when none failed); ``samples`` keeps the first request of each
    distinct outcome, at most three.
    """
    if not classified:
        return {"source": source, "target": target, "count": 0, "succeeded": 0, "failed": 0, "statuses": {},
                "curl_exits": {}, "result": "failure", "meaning": "no request was made", "samples": []}
    succeeded = sum(1 for c in classified if c["result"] == "success")
    failed = len(classified) - succeeded
    statuses = Counter(str(c["status"]) for c in classified if c.get("status") not in (None, "", 0, "000"))
    exits = Counter(str(c["curl_exit"]) for c in classified)
    pool = [c for c in classified if c["result"] != "success"] or classified
    meaning = Counter(c["meaning"] for c in pool).most_common(1)[0][0]
    samples, seen = [], set()
    for c in classified:
        key = (c["result"], c.get("status"), c["curl_exit"])
        if key not in seen and len(samples) < MAX_SAMPLES:
            seen.add(key)
            samples.append(dict(c))
    if failed == 0:
        result = "success"
    elif succeeded == 0:
        result = "failure"
    else:
        result = "mixed"
    return {"source": source, "target": target, "count": len(classified), "succeeded": succeeded,
            "failed": failed, "statuses": dict(statuses), "curl_exits": dict(exits), "result": result,
            "meaning": meaning, "samples": samples}


def probe_detail(probe):
    """'curl exit 56 (connection reset by peer) 10/10' or 'HTTP 200 10/10' for a report row."""
    count = probe["count"]
    if probe["result"] == "success":
        top = Counter(probe["statuses"]).most_common(1)
        status = top[0][0] if top else "?"
        return "HTTP %s %d/%d" % (status, probe["succeeded"], count)
    exits = Counter(probe["curl_exits"])
    exits.pop("0", None)
    if exits:
        code, n = exits.most_common(1)[0]
        text = "curl exit %s (%s) %d/%d" % (code, probe["meaning"], n, count)
    else:
        text = "%s %d/%d" % (probe["meaning"], probe["failed"], count)
    if probe["succeeded"]:
        text += ", %d/%d succeeded" % (probe["succeeded"], count)
    return text


# curl exit codes named by the symptom vocabulary of mtls_predict ("reset", "http-503").
_EXIT_SYMPTOMS = {56: "reset", 52: "empty-reply", 7: "refused", 28: "timeout", 35: "tls-error", 60: "tls-error"}


def observed_reachability(probe):
    """'success', 'mixed' or 'failure (<symptom>)', comparable with mtls_predict's outcome and symptom.

    The symptom is that of the most frequent failure: an HTTP status >= 400 gives 'http-<status>',
    a curl exit gives its name (reset, empty-reply, refused, timeout, tls-error) or 'curl-<code>'.
    """
    if probe["result"] != "failure":
        return probe["result"]
    exits = Counter({int(k): v for k, v in probe["curl_exits"].items() if str(k) != "0"})
    statuses = Counter({int(k): v for k, v in probe["statuses"].items()})
    top_exit = exits.most_common(1)[0] if exits else (None, 0)
    top_status = statuses.most_common(1)[0] if statuses else (None, 0)
    if top_status[1] > top_exit[1]:
        return "failure (http-%d)" % top_status[0]
    if top_exit[0] is None:
        return "failure"
    return "failure (%s)" % _EXIT_SYMPTOMS.get(top_exit[0], "curl-%d" % top_exit[0])


def expected_reachability(prediction):
    """The same text from an mtls_predict result."""
    if prediction["outcome"] == "success":
        return "success"
    return "failure (%s)" % prediction["symptom"]
