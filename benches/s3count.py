#!/usr/bin/env python3
"""Count S3 requests by kind from moto_server's access log (read on stdin).

moto_server logs one werkzeug line per request, e.g.

    127.0.0.1 - - [23/Nov/2026 12:46:58] "GET /bucket?delimiter=/&prefix=tree/ HTTP/1.1" 200 -
    127.0.0.1 - - [23/Nov/2026 12:46:58] "\x1b[33mHEAD /bucket/tree HTTP/1.1\x1b[0m" 404 -

(non-2xx lines are wrapped in ANSI colour codes, which are stripped).
Classification (path-style requests: /<bucket>[/<key>][?query]):

- MPU:    any request whose query names `uploads` or `uploadId`
          (create, upload part, complete, abort, list uploads)
- LIST:   GET on the bucket itself (ListObjects v1/v2)
- DELETE: DELETE of an object, or a POST ?delete batch (one request)
- GET / HEAD / PUT: on an object (PUT includes server-side copies); HEAD
          on the bucket is a HEAD too
- OTHER:  anything else (counted, never dropped)

Usage: s3count.py [--by-key] < log-slice
Prints: LIST GET HEAD PUT DELETE MPU OTHER  (numbers, one line)
With --by-key also prints every request as "KIND METHOD PATH STATUS" on stderr.
"""
import re
import sys

ANSI = re.compile(r"\x1b\[[0-9;]*m")
LINE = re.compile(r'"(GET|HEAD|PUT|POST|DELETE) (\S+) HTTP/[0-9.]+" (\d{3})')
KINDS = ("LIST", "GET", "HEAD", "PUT", "DELETE", "MPU", "OTHER")


def classify(method, target):
    path, _, query = target.partition("?")
    params = {p.split("=", 1)[0] for p in query.split("&") if p}
    on_bucket = path.strip("/").count("/") == 0
    if "uploads" in params or "uploadId" in params:
        return "MPU"
    if method == "GET" and on_bucket and not (params & {"location", "versioning", "policy", "acl"}):
        return "LIST"
    if method == "DELETE" and not on_bucket:
        return "DELETE"
    if method == "POST" and "delete" in params:
        return "DELETE"
    if method in ("GET", "PUT") and not on_bucket:
        return method
    if method == "HEAD":
        return "HEAD"
    return "OTHER"


def main():
    by_key = "--by-key" in sys.argv
    counts = dict.fromkeys(KINDS, 0)
    for raw in sys.stdin.buffer:
        line = ANSI.sub("", raw.decode("utf-8", "replace"))
        m = LINE.search(line)
        if not m:
            continue
        method, target, status = m.groups()
        kind = classify(method, target)
        counts[kind] += 1
        if by_key:
            print(kind, method, target, status, file=sys.stderr)
    print(" ".join(str(counts[k]) for k in KINDS))


if __name__ == "__main__":
    main()
