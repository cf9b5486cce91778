// Package freeport finds loopback TCP ports for the processes the
// integration tests start.
//
// A port is taken from below Linux's ephemeral range (32768–60999 by
// default), so the kernel never hands it to an outgoing connection or to
// another program's listen on port 0. That matters for processes started
// again on the same port (a control plane restart): with a port from the
// ephemeral range, any of the thousands of loopback connections that
// parallel test packages open could take it meanwhile. The port is checked
// free by binding it once; two picks colliding is left to the random
// choice over some twelve thousand ports.
package freeport

import (
	"fmt"
	"math/rand/v2"
	"net"
	"strconv"
)

// Range is where ports are picked: [Low, High).
const (
	Low  = 20000
	High = 32768
)

// Port returns a loopback port nobody listens on right now.
func Port() (int, error) {
	var lastErr error
	for range 100 {
		port := Low + rand.IntN(High-Low)
		l, err := net.Listen("tcp", Addr(port))
		if err != nil {
			lastErr = err
			continue
		}
		l.Close()
		return port, nil
	}
	return 0, fmt.Errorf("no free loopback port in [%d, %d): %w", Low, High, lastErr)
}

// Addr is the loopback address of port.
func Addr(port int) string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(port)) }

// FreeAddr returns the loopback address of a free port.
func FreeAddr() (string, error) {
	port, err := Port()
	if err != nil {
		return "", err
	}
	return Addr(port), nil
}
