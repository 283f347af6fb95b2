package gate

import (
	"net"
	"strings"
	"testing"
)

// TestListenFuncs checks that a server creates its TCP listener and its
// HTTP/3 UDP socket through Options.Listen and Options.ListenPacket, as a
// hot upgrade needs, on the same port.
func TestListenFuncs(t *testing.T) {
	ca := newCA(t)
	cert, key := ca.leaf(t, false, "localhost")
	spec := tlsSpec(t, "http3: true\n", map[string][2]string{"a": {cert, key}})
	var calls []string
	s, err := New("s", spec, Options{
		Resolve: named,
		Listen: func(network, addr string) (net.Listener, error) {
			calls = append(calls, network+" "+addr)
			return net.Listen(network, addr)
		},
		ListenPacket: func(network, addr string) (net.PacketConn, error) {
			calls = append(calls, network+" "+addr)
			return net.ListenPacket(network, addr)
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Listen(); err != nil {
		t.Fatal(err)
	}
	s.Serve()
	defer s.Close()
	_, port, _ := net.SplitHostPort(s.Addr())
	if len(calls) != 2 || calls[0] != "tcp 127.0.0.1:0" || calls[1] != "udp 127.0.0.1:"+port {
		t.Fatalf("calls %q, want tcp 127.0.0.1:0 then udp 127.0.0.1:%s", strings.Join(calls, ", "), port)
	}
}
