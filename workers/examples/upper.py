#!/usr/bin/env python3
"""upper.py - example weft function for the exec runtime (Python 3, stdlib
only): answers the event's JSON data with every string value uppercased
(ASCII letters only, object keys left alone), like uppercase.so.

weft starts this program once per worker and sends it one request frame per
event on stdin; it answers each with one reply frame on stdout. A frame is
a decimal length line, exactly that many bytes of JSON, and a newline (see
the README, "The exec protocol"). Anything written to stderr ends up in
weft's log, tagged with the function's name.
"""
import json
import sys

ASCII_UPPER = str.maketrans("abcdefghijklmnopqrstuvwxyz", "ABCDEFGHIJKLMNOPQRSTUVWXYZ")


def read_frame(stream):
    """One frame's payload, or None at EOF (weft wants us to exit)."""
    line = stream.readline()
    if not line:
        return None
    payload = stream.read(int(line))
    stream.read(1)  # the newline after the payload
    return payload


def write_frame(stream, obj):
    payload = json.dumps(obj, ensure_ascii=False, separators=(",", ":")).encode()
    stream.write(b"%d\n%s\n" % (len(payload), payload))
    stream.flush()


def upper(value):
    if isinstance(value, str):
        return value.translate(ASCII_UPPER)
    if isinstance(value, list):
        return [upper(v) for v in value]
    if isinstance(value, dict):
        return {k: upper(v) for k, v in value.items()}
    return value


def handle(request):
    event = request["event"]
    if "data_base64" in event:
        return {"disposition": "fail", "error": "data is not JSON"}
    if "data" not in event:
        return {"disposition": "fail", "error": "data is empty"}
    return {
        "disposition": "ok",
        "datacontenttype": "application/json",
        "data": upper(event["data"]),
    }


def main():
    stdin, stdout = sys.stdin.buffer, sys.stdout.buffer
    print("upper.py ready (python %d.%d)" % sys.version_info[:2], file=sys.stderr, flush=True)
    while True:
        payload = read_frame(stdin)
        if payload is None:
            return 0
        try:
            reply = handle(json.loads(payload))
        except Exception as e:  # a bug here must not kill the program
            reply = {"disposition": "fail", "error": "upper.py: %s" % e}
        write_frame(stdout, reply)


if __name__ == "__main__":
    sys.exit(main())
