#!/usr/bin/env python3
"""faulty.py - example exec function that misbehaves on request, for tests
(the exec counterpart of faulty.so). The mode is the "fail" member of the
event's JSON data:

  exit        exit(3) without answering (the program ends mid-stream)
  kill        SIGKILL itself without answering
  garbage     answer with a line that is not a length
  badjson     answer with a well-framed reply that is not JSON
  nonewline   answer with a reply not followed by its newline, then wait
  big-N       answer with a string of N bytes as data
  retry       disposition retry, retry_after_ms 1500
  fatal       disposition fail, error "asked to fail"
  drop        disposition drop
  sleep-N     sleep N ms, then answer like the default
  hang        sleep forever
  stderr      write three lines to stderr, then answer like the default
  env         answer {"pid":P,"fds":[...],"env":{...}}
  text        answer "plain text" as text/plain
  binary      answer bytes 00 01 02 ff as data_base64
  anything else: answer {"pid":P,"count":N,"request":<the whole request>}
"""
import base64
import json
import os
import signal
import sys
import time

COUNT = 0


def read_frame(stream):
    line = stream.readline()
    if not line:
        return None
    payload = stream.read(int(line))
    stream.read(1)
    return payload


def write_raw(stream, payload):
    stream.write(b"%d\n%s\n" % (len(payload), payload))
    stream.flush()


def reply(stream, obj):
    write_raw(stream, json.dumps(obj, separators=(",", ":")).encode())


def main():
    global COUNT
    stdin, stdout = sys.stdin.buffer, sys.stdout.buffer
    while True:
        payload = read_frame(stdin)
        if payload is None:
            return 0
        COUNT += 1
        request = json.loads(payload)
        data = request["event"].get("data")
        mode = data.get("fail", "") if isinstance(data, dict) else ""
        if mode == "exit":
            sys.exit(3)
        if mode == "kill":
            os.kill(os.getpid(), signal.SIGKILL)
        if mode == "garbage":
            stdout.write(b"hello, weft\n")
            stdout.flush()
            continue
        if mode == "badjson":
            write_raw(stdout, b"{not json")
            continue
        if mode == "nonewline":
            stdout.write(b'2\n{}X')
            stdout.flush()
            time.sleep(3600)
        if mode.startswith("big-"):
            reply(stdout, {"datacontenttype": "text/plain", "data": "x" * int(mode[4:])})
            continue
        if mode == "retry":
            reply(stdout, {"disposition": "retry", "error": "asked to retry", "retry_after_ms": 1500})
            continue
        if mode == "fatal":
            reply(stdout, {"disposition": "fail", "error": "asked to fail"})
            continue
        if mode == "drop":
            reply(stdout, {"disposition": "drop"})
            continue
        if mode.startswith("sleep-"):
            time.sleep(int(mode[6:]) / 1000.0)
        if mode == "hang":
            while True:
                time.sleep(3600)
        if mode == "stderr":
            for i in range(3):
                print("faulty.py says line %d" % (i + 1), file=sys.stderr, flush=True)
        if mode == "env":
            fds = sorted(int(f) for f in os.listdir("/proc/self/fd"))
            # listdir's own fd is already closed again, but may show up
            fds = [f for f in fds if os.path.exists("/proc/self/fd/%d" % f)]
            reply(stdout, {"data": {"pid": os.getpid(), "fds": fds, "env": dict(os.environ)}})
            continue
        if mode == "text":
            reply(stdout, {"datacontenttype": "text/plain", "data": "plain text"})
            continue
        if mode == "binary":
            reply(stdout, {"data_base64": base64.b64encode(b"\x00\x01\x02\xff").decode()})
            continue
        reply(stdout, {"data": {"pid": os.getpid(), "count": COUNT, "request": request}})


if __name__ == "__main__":
    sys.exit(main())
