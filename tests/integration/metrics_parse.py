#!/usr/bin/python3
# SPDX-License-Identifier: MIT
# Reads a scrape of shipd's /metrics with python3-prometheus-client's text
# parser and checks what every family must be: shipd_ (or the standard
# process_) names, counters ending in _total, histograms whose buckets
# rise to +Inf and match their count, no label naming a subject or key,
# and the figures the test made move. Exit status 0, or 1 with the reason.
import sys

from prometheus_client.parser import text_string_to_metric_families

ALLOWED_LABELS = {"app", "block", "method", "code", "state", "version", "le",
                  "queue", "stream", "path"}


def fail(why):
    print("metrics_parse: " + why)
    sys.exit(1)


def main(path):
    with open(path, encoding="utf-8") as f:
        text = f.read()
    # The parser adds _total to a counter's samples itself: read the
    # names as written.
    for line in text.splitlines():
        parts = line.split()
        if line.startswith("# TYPE ") and parts[3] == "counter" \
                and not parts[2].endswith("_total"):
            fail("counter %s does not end in _total" % parts[2])
    families = list(text_string_to_metric_families(text))
    if len(families) < 30:
        fail("only %d families" % len(families))
    seen = {}
    for fam in families:
        if not (fam.name.startswith("shipd_") or fam.name.startswith("process_")):
            fail("family %s lacks the shipd_ prefix" % fam.name)
        if fam.type not in ("counter", "gauge", "histogram"):
            fail("family %s is %s (untyped: a sample outside its family?)"
                 % (fam.name, fam.type))
        if not fam.documentation:
            fail("family %s has no HELP" % fam.name)
        if fam.name in seen:
            fail("family %s appears twice" % fam.name)
        seen[fam.name] = fam
        for s in fam.samples:
            extra = set(s.labels) - ALLOWED_LABELS
            if extra:
                fail("%s has labels %s" % (s.name, sorted(extra)))
            if fam.type == "counter" and not s.name.endswith("_total"):
                fail("counter sample %s does not end in _total" % s.name)
            if s.value < 0 and s.name != "process_max_fds":
                fail("%s is negative" % s.name)
        if fam.type == "histogram":
            check_histogram(fam)
    for name in ("shipd_nats_connected", "shipd_rpc_requests",
                 "shipd_rpc_request_duration_seconds", "shipd_app_requests",
                 "process_resident_memory_bytes", "process_open_fds",
                 "shipd_loop_turn_max_seconds", "shipd_clients"):
        if name not in seen:
            fail("no family %s" % name)
    value = lambda fam, **labels: sum(
        s.value for s in seen[fam].samples
        if all(s.labels.get(k) == v for k, v in labels.items()))
    if value("shipd_rpc_requests", method="kv_get") < 1:
        fail("kv_get was not counted")
    if value("shipd_rpc_responses", method="kv_get", code="not_found") < 1:
        fail("kv_get's not_found was not counted")
    if value("shipd_app_requests", app="parsed") < 3:
        fail("the app 'parsed' made hello, kv_get, publish and status")
    if value("shipd_nats_connected") != 1:
        fail("NATS is not connected")
    if value("process_resident_memory_bytes") <= 0:
        fail("no resident memory")
    print("metrics_parse: %d families ok" % len(families))


def check_histogram(fam):
    groups = {}
    for s in fam.samples:
        key = tuple(sorted((k, v) for k, v in s.labels.items() if k != "le"))
        groups.setdefault(key, {"buckets": [], "count": None})
        if s.name.endswith("_bucket"):
            groups[key]["buckets"].append((float(s.labels["le"]), s.value))
        elif s.name.endswith("_count"):
            groups[key]["count"] = s.value
    for key, g in groups.items():
        b = g["buckets"]
        if not b or b[-1][0] != float("inf"):
            fail("%s %s has no +Inf bucket" % (fam.name, key))
        if any(b[i][1] > b[i + 1][1] for i in range(len(b) - 1)):
            fail("%s %s buckets do not rise" % (fam.name, key))
        if g["count"] != b[-1][1]:
            fail("%s %s count differs from +Inf" % (fam.name, key))


if __name__ == "__main__":
    if len(sys.argv) != 2:
        fail("usage: metrics_parse.py SCRAPE")
    main(sys.argv[1])
