//go:build tools

// Package tools pins the nats-server that ops/stack runs when
// WEFT_NATS=pinned: go.mod and go.sum fix its version and checksums, and
// ops/nats/build compiles it from the Go module proxy.
package tools

import _ "github.com/nats-io/nats-server/v2"
