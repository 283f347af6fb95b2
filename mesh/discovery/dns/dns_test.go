package dns_test

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/net/dns/dnsmessage"

	"github.com/sluicegw/sluice"
	"github.com/sluicegw/sluice/mesh/discovery/discoverytest"
	"github.com/sluicegw/sluice/mesh/discovery/dns"
)

// dnsServer is a tiny authoritative DNS server on loopback UDP that
// answers SRV and A questions from its tables (and AAAA with no records),
// for the registry's resolver to ask.
type dnsServer struct {
	pc   net.PacketConn
	mu   sync.Mutex
	srv  map[string][]dnsmessage.SRVResource // name (with trailing dot) → records
	a    map[string][]netip.Addr
	done chan struct{}
}

func startDNS(t *testing.T) *dnsServer {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &dnsServer{pc: pc, srv: map[string][]dnsmessage.SRVResource{}, a: map[string][]netip.Addr{}, done: make(chan struct{})}
	go s.serve()
	t.Cleanup(s.stop)
	return s
}

func (s *dnsServer) stop() {
	s.pc.Close()
	<-s.done
}

func (s *dnsServer) addr() string { return s.pc.LocalAddr().String() }

func (s *dnsServer) setSRV(name string, rr ...dnsmessage.SRVResource) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.srv[name] = rr
}

func (s *dnsServer) setA(name string, ips ...string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.a[name] = nil
	for _, ip := range ips {
		s.a[name] = append(s.a[name], netip.MustParseAddr(ip))
	}
}

func (s *dnsServer) serve() {
	defer close(s.done)
	buf := make([]byte, 1500)
	for {
		n, from, err := s.pc.ReadFrom(buf)
		if err != nil {
			return
		}
		if resp := s.answer(buf[:n]); resp != nil {
			s.pc.WriteTo(resp, from)
		}
	}
}

func (s *dnsServer) answer(req []byte) []byte {
	var p dnsmessage.Parser
	h, err := p.Start(req)
	if err != nil {
		return nil
	}
	q, err := p.Question()
	if err != nil {
		return nil
	}
	name := q.Name.String()
	s.mu.Lock()
	srvs, hasSRV := s.srv[name]
	as, hasA := s.a[name]
	s.mu.Unlock()
	rh := dnsmessage.Header{ID: h.ID, Response: true, Authoritative: true, RecursionDesired: h.RecursionDesired}
	if !hasSRV && !hasA {
		rh.RCode = dnsmessage.RCodeNameError
	}
	b := dnsmessage.NewBuilder(nil, rh)
	b.EnableCompression()
	b.StartQuestions()
	b.Question(q)
	b.StartAnswers()
	rhdr := dnsmessage.ResourceHeader{Name: q.Name, Class: dnsmessage.ClassINET, TTL: 1}
	switch q.Type {
	case dnsmessage.TypeSRV:
		for _, r := range srvs {
			b.SRVResource(rhdr, r)
		}
	case dnsmessage.TypeA:
		for _, ip := range as {
			b.AResource(rhdr, dnsmessage.AResource{A: ip.As4()})
		}
	}
	out, err := b.Finish()
	if err != nil {
		return nil
	}
	return out
}

func srv(target string, port int, weight uint16) dnsmessage.SRVResource {
	return dnsmessage.SRVResource{Priority: 10, Weight: weight, Port: uint16(port), Target: dnsmessage.MustNewName(target)}
}

// TestSRVPoolFollowsDNS runs a real Gateway and Proxy under concurrent
// load while the SRV records of the service change, then stops the DNS
// server: traffic follows the records, no request fails, and the last
// known instances keep serving, reported stale.
func TestSRVPoolFollowsDNS(t *testing.T) {
	d := startDNS(t)
	a, b := discoverytest.NewUpstream(t, "a"), discoverytest.NewUpstream(t, "b")
	d.setA("a.svc.test.", a.Host)
	d.setA("b.svc.test.", b.Host)
	const name = "_http._tcp.orders.svc.test."
	d.setSRV(name, srv("a.svc.test.", a.Port, 1))

	h := discoverytest.Start(t, []sluice.ObjectKind{dns.Kind}, fmt.Sprintf(`
kind: DNSServiceRegistry
name: reg
servers: [%s]
syncInterval: 100ms
timeout: 1s
`, d.addr()), "reg", strings.TrimSuffix(name, "."), "")
	load := h.StartLoad(t, 8)
	load.Only(t, 10*time.Second, "a")

	d.setSRV(name, srv("a.svc.test.", a.Port, 1), srv("b.svc.test.", b.Port, 1))
	load.Only(t, 10*time.Second, "a", "b")

	d.setSRV(name, srv("b.svc.test.", b.Port, 1))
	load.Only(t, 10*time.Second, "b")

	d.stop()
	discoverytest.Eventually(t, 20*time.Second, "the registry to report stale", h.RegistryStale)
	discoverytest.Eventually(t, 5*time.Second, "the pool to report stale", h.PoolStale)
	load.Only(t, 10*time.Second, "b")

	load.Stop()
	if n, last := load.Failed(); n != 0 {
		t.Fatalf("%d requests failed; last: %s", n, last)
	}
}

// TestARecords looks a host:port service up as A records.
func TestARecords(t *testing.T) {
	d := startDNS(t)
	a := discoverytest.NewUpstream(t, "a")
	d.setA("orders.svc.test.", a.Host)
	h := discoverytest.Start(t, []sluice.ObjectKind{dns.Kind}, fmt.Sprintf(`
kind: DNSServiceRegistry
name: reg
servers: [%s]
syncInterval: 100ms
`, d.addr()), "reg", fmt.Sprintf("orders.svc.test:%d", a.Port), "")
	load := h.StartLoad(t, 2)
	load.Only(t, 10*time.Second, "a")
	load.Stop()
	if n, last := load.Failed(); n != 0 {
		t.Fatalf("%d requests failed; last: %s", n, last)
	}
}

func TestSpecErrorsNameTheField(t *testing.T) {
	for _, tt := range []struct{ yaml, field string }{
		{"servers: [localhost]", "servers[0]"},
		{"scheme: ftp", "scheme"},
		{"timeout: -1s", "timeout"},
	} {
		g, err := sluice.New(sluice.WithObjectKinds(dns.Kind))
		if err != nil {
			t.Fatal(err)
		}
		err = g.ApplyYAML(context.Background(), strings.NewReader("kind: DNSServiceRegistry\nname: r\n"+tt.yaml+"\n"))
		if err == nil || !strings.Contains(err.Error(), tt.field) {
			t.Errorf("%q: error %v, want one naming %s", tt.yaml, err, tt.field)
		}
		g.Shutdown(context.Background())
	}
}
