package freeport

import (
	"net"
	"testing"
)

func TestPortIsFreeAndOutsideTheEphemeralRange(t *testing.T) {
	for range 50 {
		port, err := Port()
		if err != nil {
			t.Fatal(err)
		}
		if port < Low || port >= High {
			t.Fatalf("port %d outside [%d, %d)", port, Low, High)
		}
		l, err := net.Listen("tcp", Addr(port))
		if err != nil {
			t.Fatalf("port %d is not free: %v", port, err)
		}
		l.Close()
	}
}
