#!/bin/sh
# upper.sh - example weft function for the exec runtime in POSIX sh (plus
# head and awk): answers the event's JSON data with every string value
# uppercased (ASCII letters only, object keys and escapes left alone), like
# uppercase.so.
#
# weft starts this script once per worker and writes one request frame per
# event to its stdin: a decimal length line, exactly that many bytes of
# JSON, a newline. The script answers each with one reply frame on stdout.
# Lines written to stderr end up in weft's log, tagged with the function.
#
# It shows the protocol, not a fast JSON engine: awk walks the request one
# character at a time, which is fine for events of a few kilobytes.
set -u
LC_ALL=C # ${#reply} counts bytes, awk works on bytes
export LC_ALL

# Prints the value of the request's event.data (the "data" member at depth
# 2) with the letters of its non-key strings uppercased; nothing when the
# event has no JSON data.
UPPER_AWK='
{
    s = $0; n = length(s); depth = 0; instr = 0; esc = 0; skip = 0
    iskey = 0; expect = 0; key = ""; last = ""; lastd = 0; cap = 0; done = 0; out = ""
    for (i = 1; i <= n; i++) {
        c = substr(s, i, 1)
        if (instr) {
            if (skip > 0) skip--
            else if (esc) { esc = 0; if (c == "u") skip = 4 }
            else if (c == "\\") esc = 1
            else if (c == "\"") { instr = 0; if (iskey) { last = key; lastd = depth } }
            else if (iskey) key = key c
            else if (cap) { p = index("abcdefghijklmnopqrstuvwxyz", c); if (p) c = substr("ABCDEFGHIJKLMNOPQRSTUVWXYZ", p, 1) }
            if (cap) out = out c
            continue
        }
        if (cap && depth == 2 && (c == "," || c == "}")) { cap = 0; done = 1 }
        if (c == "\"") { instr = 1; iskey = expect; expect = 0; if (iskey) key = "" }
        else if (c == "{") { depth++; type[depth] = "o"; expect = 1 }
        else if (c == "[") { depth++; type[depth] = "a" }
        else if (c == "}" || c == "]") depth--
        else if (c == ",") { if (type[depth] == "o") expect = 1 }
        else if (c == ":" && !done && depth == 2 && lastd == 2 && last == "data") { cap = 1; continue }
        if (cap) out = out c
    }
    if (done) print out
}'

echo "upper.sh ready" >&2
while IFS= read -r len; do
    req=$(head -c "$len")
    IFS= read -r _ || true # the newline after the payload
    data=$(printf '%s\n' "$req" | awk "$UPPER_AWK")
    if [ -n "$data" ]; then
        reply="{\"disposition\":\"ok\",\"datacontenttype\":\"application/json\",\"data\":$data}"
    else
        reply='{"disposition":"fail","error":"data is empty or not JSON"}'
    fi
    printf '%d\n%s\n' "${#reply}" "$reply"
done
