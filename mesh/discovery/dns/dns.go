// Package dns is the DNSServiceRegistry object kind: service instances
// from DNS SRV records, or A/AAAA records with a fixed port, polled.
//
// A pool's serviceName is the DNS name to look up:
//
//   - a name starting with "_" (_http._tcp.orders.example.com) is looked
//     up as SRV records: each record of the lowest priority is an
//     instance, its target resolved to addresses, its port and weight
//     kept;
//   - any other name is host:port (orders.example.com:8080): each A or
//     AAAA record of host is an instance on port.
//
// Each instance's ID is its address:port. DNS has no health: every record
// is an instance.
//
//	kind: DNSServiceRegistry
//	name: dns
//	servers: [10.0.0.2:53]   # empty: the system's resolver
//	scheme: http
//	syncInterval: 500ms
//
// Register the kind with sluice.WithObjectKinds(dns.Kind).
package dns

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sluicegw/sluice"
	"github.com/sluicegw/sluice/mesh/discovery"
	"github.com/sluicegw/sluice/pipeline"
)

// KindName is the kind's name in specs.
const KindName = "DNSServiceRegistry"

// DefaultSyncInterval is the time between lookups when syncInterval is 0.
// Half a second keeps a change within a second of reaching the pools.
const DefaultSyncInterval = 500 * time.Millisecond

// Spec is the DNSServiceRegistry configuration (not an Easegress kind).
type Spec struct {
	// Servers are the DNS servers to ask, host:port, tried in turn. Empty
	// means the system's resolver.
	Servers []string `yaml:"servers,omitempty"`
	// Scheme is the instances' scheme, http (the default when empty) or
	// https.
	Scheme string `yaml:"scheme,omitempty"`
	// SyncInterval is the time between lookups. 0 means
	// DefaultSyncInterval (500ms).
	SyncInterval time.Duration `yaml:"syncInterval,omitempty"`
	// Timeout bounds each round of lookups. 0 means 5s.
	Timeout time.Duration `yaml:"timeout,omitempty"`
}

// Validate checks s; errors name the field.
func (s *Spec) Validate() error {
	for i, a := range s.Servers {
		if _, err := netip.ParseAddrPort(a); err != nil {
			return pipeline.FieldErr(fmt.Sprintf("servers[%d]", i), fmt.Errorf("%w: %q is not ip:port", discovery.ErrBadSpec, a))
		}
	}
	switch s.Scheme {
	case "", "http", "https":
	default:
		return pipeline.FieldErr("scheme", fmt.Errorf("%w: %q (want http or https)", discovery.ErrBadSpec, s.Scheme))
	}
	return discovery.CheckDurations(s.SyncInterval, s.Timeout)
}

// Kind is the DNSServiceRegistry object kind.
var Kind = sluice.DefineObject(KindName, sluice.CategorySystem, build).
	WithDescription("service instances from DNS SRV or A/AAAA records, polled")

func build(env sluice.Env, spec *Spec) (sluice.Object, error) {
	b := &backend{scheme: spec.Scheme, res: net.DefaultResolver, conns: map[net.Conn]struct{}{}}
	if len(spec.Servers) > 0 {
		servers := spec.Servers
		var next atomic.Uint32
		d := net.Dialer{}
		b.res = &net.Resolver{PreferGo: true, Dial: func(ctx context.Context, network, _ string) (net.Conn, error) {
			i := next.Add(1)
			c, err := d.DialContext(ctx, network, servers[int(i)%len(servers)])
			if err == nil {
				b.track(c)
			}
			return c, err
		}}
	}
	interval := spec.SyncInterval
	if interval == 0 {
		interval = DefaultSyncInterval
	}
	return discovery.NewRegistry(b, discovery.Options{
		Kind: KindName, Name: env.Name, Logger: env.Logger, Clock: env.Clock,
		SyncInterval: interval, Timeout: spec.Timeout,
		Close: func() error { b.closeConns(); return nil },
	}), nil
}

type backend struct {
	scheme string
	res    *net.Resolver

	mu    sync.Mutex
	conns map[net.Conn]struct{} // the connections to servers a Fetch opened
}

func (b *backend) track(c net.Conn) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.conns[c] = struct{}{}
}

// closeConns closes the connections the resolver opened. A lookup that
// outlives its context (the resolver finishes it on its own goroutine, up
// to the system's DNS timeouts) ends at once instead.
func (b *backend) closeConns() {
	b.mu.Lock()
	defer b.mu.Unlock()
	for c := range b.conns {
		c.Close()
	}
	clear(b.conns)
}

// Fetch looks each service up.
func (b *backend) Fetch(ctx context.Context, services []string) (map[string][]pipeline.ServiceInstance, error) {
	defer b.closeConns()
	out := map[string][]pipeline.ServiceInstance{}
	for _, svc := range services {
		inst, err := b.lookup(ctx, svc)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", svc, err)
		}
		out[svc] = inst
	}
	return out, nil
}

func (b *backend) lookup(ctx context.Context, svc string) ([]pipeline.ServiceInstance, error) {
	if strings.HasPrefix(svc, "_") {
		_, srvs, err := b.res.LookupSRV(ctx, "", "", svc)
		if notFound(err) {
			return nil, nil
		}
		if err != nil {
			return nil, err
		}
		var out []pipeline.ServiceInstance
		for _, s := range srvs {
			if s.Priority != srvs[0].Priority {
				break // sorted by priority: only the first group serves
			}
			addrs, err := b.addrs(ctx, strings.TrimSuffix(s.Target, "."))
			if err != nil {
				return nil, err
			}
			for _, a := range addrs {
				out = append(out, b.instance(svc, a, int(s.Port), int(s.Weight)))
			}
		}
		return out, nil
	}
	host, portStr, err := net.SplitHostPort(svc)
	if err != nil {
		return nil, fmt.Errorf("a service name is _service._proto.domain (SRV) or host:port: %w", err)
	}
	port, err := strconv.Atoi(portStr)
	if err != nil || port < 1 || port > 65535 {
		return nil, fmt.Errorf("bad port %q", portStr)
	}
	addrs, err := b.addrs(ctx, host)
	if err != nil {
		return nil, err
	}
	out := make([]pipeline.ServiceInstance, 0, len(addrs))
	for _, a := range addrs {
		out = append(out, b.instance(svc, a, port, 1))
	}
	return out, nil
}

// addrs resolves host to its addresses (none when it does not exist).
func (b *backend) addrs(ctx context.Context, host string) ([]string, error) {
	if ip, err := netip.ParseAddr(host); err == nil {
		return []string{ip.String()}, nil
	}
	ips, err := b.res.LookupIPAddr(ctx, host)
	if notFound(err) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	out := make([]string, len(ips))
	for i, ip := range ips {
		out[i] = ip.IP.String()
	}
	return out, nil
}

func (b *backend) instance(svc, addr string, port, weight int) pipeline.ServiceInstance {
	return pipeline.ServiceInstance{
		ID:      net.JoinHostPort(addr, strconv.Itoa(port)),
		Service: svc,
		Address: addr,
		Port:    port,
		Scheme:  b.scheme,
		Weight:  weight,
		Healthy: true,
	}
}

// notFound reports whether err says the name does not exist (an answer,
// not a failure).
func notFound(err error) bool {
	var de *net.DNSError
	return errors.As(err, &de) && de.IsNotFound
}

var _ discovery.Backend = (*backend)(nil)
