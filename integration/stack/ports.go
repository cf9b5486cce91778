package stack

import (
	"fmt"
	"net"
)

// fillPorts gives every zero port a free loopback port. A port is found by
// binding :0 and releasing it; another program could take it before the
// component binds it, which is rare enough on a test machine that the clear
// "address in use" failure is preferable to plumbing listeners into
// subprocesses.
func fillPorts(p Ports) (Ports, error) {
	used := map[int]bool{}
	for _, port := range []*int{&p.Gateway, &p.EnvoyAdmin, &p.XDS, &p.XDSHTTP, &p.Agent, &p.AgentHTTP, &p.Backend} {
		if *port != 0 {
			used[*port] = true
		}
	}
	for _, port := range []*int{&p.Gateway, &p.EnvoyAdmin, &p.XDS, &p.XDSHTTP, &p.Agent, &p.AgentHTTP, &p.Backend} {
		for *port == 0 {
			free, err := freePort()
			if err != nil {
				return p, err
			}
			if !used[free] {
				used[free] = true
				*port = free
			}
		}
	}
	return p, nil
}

func freePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("find a free loopback port: %w", err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

func loopback(port int) string { return fmt.Sprintf("127.0.0.1:%d", port) }
