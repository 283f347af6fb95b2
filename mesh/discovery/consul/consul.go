// Package consul is the ConsulServiceRegistry object kind: service
// instances from Consul's health API, followed with blocking queries.
//
// Each entry of /v1/health/service/<serviceName> is an instance: the
// service's ID, its address (the node's when the service has none), port,
// tags, meta and passing weight; it is healthy while every check of the
// entry passes. The scheme is the service meta "scheme" (http when
// absent). The registry then holds a blocking query (index and wait) per
// watched service, so that a change reaches the pools at once.
//
//	kind: ConsulServiceRegistry
//	name: consul
//	address: 127.0.0.1:8500
//	scheme: http
//	datacenter: dc1          # optional
//	token: secret            # ACL token, optional
//	namespace: ns            # Consul Enterprise, optional
//	serviceTags: [v2]        # only instances with every one of these tags
//	tls: {caFile: /etc/sluice/consul-ca.pem}   # with scheme https
//
// Like Consul's own tools, the client takes what the spec leaves empty
// (token, namespace) from the CONSUL_HTTP_* environment variables.
//
// Register the kind with sluice.WithObjectKinds(consul.Kind).
package consul

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/consul/api"

	"github.com/sluicegw/sluice"
	"github.com/sluicegw/sluice/mesh/discovery"
	"github.com/sluicegw/sluice/pipeline"
)

// KindName is the kind's name in specs.
const KindName = "ConsulServiceRegistry"

// Spec is the ConsulServiceRegistry configuration, with Easegress's field
// names (address, scheme, datacenter, token, namespace, syncInterval,
// serviceTags) and more.
type Spec struct {
	// Address is Consul's HTTP API, host:port. Required.
	Address string `yaml:"address"`
	// Scheme is http (the default when empty) or https.
	Scheme string `yaml:"scheme,omitempty"`
	// Datacenter to ask; empty means the agent's.
	Datacenter string `yaml:"datacenter,omitempty"`
	// Token is the ACL token sent with each request; empty means none.
	Token string `yaml:"token,omitempty"`
	// Namespace (Consul Enterprise); empty means the default.
	Namespace string `yaml:"namespace,omitempty"`
	// ServiceTags keeps only the instances that carry every one of these
	// tags. Empty means all.
	ServiceTags []string `yaml:"serviceTags,omitempty"`
	// TLS configures https; nil means the system roots.
	TLS *discovery.TLSSpec `yaml:"tls,omitempty"`
	// SyncInterval is the longest blocking query, and the pause before a
	// failed sync is retried. 0 means 10s.
	SyncInterval time.Duration `yaml:"syncInterval,omitempty"`
	// Timeout bounds each listing. 0 means 5s.
	Timeout time.Duration `yaml:"timeout,omitempty"`
}

// Validate checks s; errors name the field.
func (s *Spec) Validate() error {
	if s.Address == "" || strings.ContainsAny(s.Address, "/ ") {
		return pipeline.FieldErr("address", fmt.Errorf("%w: %q is not host:port", discovery.ErrBadSpec, s.Address))
	}
	switch s.Scheme {
	case "", "http", "https":
	default:
		return pipeline.FieldErr("scheme", fmt.Errorf("%w: %q (want http or https)", discovery.ErrBadSpec, s.Scheme))
	}
	if s.TLS != nil {
		if err := s.TLS.Validate("tls"); err != nil {
			return err
		}
	}
	return discovery.CheckDurations(s.SyncInterval, s.Timeout)
}

// Kind is the ConsulServiceRegistry object kind.
var Kind = sluice.DefineObject(KindName, sluice.CategorySystem, build).
	WithDescription("service instances from Consul's health API, followed with blocking queries")

func build(env sluice.Env, spec *Spec) (sluice.Object, error) {
	interval := spec.SyncInterval
	if interval <= 0 {
		interval = 10 * time.Second
	}
	// The HTTP client outlives a blocking query by its wait.
	hc, err := discovery.HTTPClient(spec.TLS, "tls", 0)
	if err != nil {
		return nil, err
	}
	cfg := &api.Config{
		Address:    spec.Address,
		Scheme:     spec.Scheme,
		Datacenter: spec.Datacenter,
		Token:      spec.Token,
		Namespace:  spec.Namespace,
		HttpClient: hc,
	}
	if cfg.Scheme == "" {
		cfg.Scheme = "http"
	}
	client, err := api.NewClient(cfg)
	if err != nil {
		return nil, pipeline.FieldErr("address", err)
	}
	b := &backend{health: client.Health(), tags: spec.ServiceTags, wait: interval, index: map[string]uint64{}}
	return discovery.NewRegistry(b, discovery.Options{
		Kind: KindName, Name: env.Name, Logger: env.Logger, Clock: env.Clock,
		SyncInterval: interval, Timeout: spec.Timeout,
		Close: func() error { hc.CloseIdleConnections(); return nil },
	}), nil
}

type backend struct {
	health *api.Health
	tags   []string
	wait   time.Duration

	mu    sync.Mutex
	index map[string]uint64 // each service's Consul index at the last Fetch
}

// Fetch lists each service's entries.
func (b *backend) Fetch(ctx context.Context, services []string) (map[string][]pipeline.ServiceInstance, error) {
	out := map[string][]pipeline.ServiceInstance{}
	index := map[string]uint64{}
	for _, svc := range services {
		entries, meta, err := b.health.ServiceMultipleTags(svc, b.tags, false, (&api.QueryOptions{}).WithContext(ctx))
		if err != nil {
			return nil, err
		}
		index[svc] = meta.LastIndex
		for _, e := range entries {
			if inst, ok := instance(svc, e); ok {
				out[svc] = append(out[svc], inst)
			}
		}
	}
	b.mu.Lock()
	b.index = index
	b.mu.Unlock()
	return out, nil
}

func instance(svc string, e *api.ServiceEntry) (pipeline.ServiceInstance, bool) {
	if e == nil || e.Service == nil {
		return pipeline.ServiceInstance{}, false
	}
	addr := e.Service.Address
	if addr == "" && e.Node != nil {
		addr = e.Node.Address
	}
	inst := pipeline.ServiceInstance{
		ID:       e.Service.ID,
		Service:  svc,
		Address:  addr,
		Port:     e.Service.Port,
		Scheme:   strings.ToLower(e.Service.Meta["scheme"]),
		Tags:     slices.Clone(e.Service.Tags),
		Weight:   e.Service.Weights.Passing,
		Metadata: e.Service.Meta,
		Healthy:  e.Checks.AggregatedStatus() == api.HealthPassing,
	}
	if inst.ID == "" {
		inst.ID = fmt.Sprintf("%s:%d", addr, inst.Port)
	}
	if discovery.CheckInstance(inst) != nil {
		return inst, false
	}
	return inst, true
}

// Wait holds a blocking query per service and returns when one of them
// comes back with a new index.
func (b *backend) Wait(ctx context.Context, services []string) error {
	b.mu.Lock()
	index := b.index
	b.mu.Unlock()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	errs := make(chan error, len(services))
	var wg sync.WaitGroup
	for _, svc := range services {
		wg.Go(func() {
			for ctx.Err() == nil {
				q := (&api.QueryOptions{WaitIndex: index[svc], WaitTime: b.wait}).WithContext(ctx)
				_, meta, err := b.health.ServiceMultipleTags(svc, b.tags, false, q)
				if err != nil {
					errs <- err
					return
				}
				if meta.LastIndex != index[svc] {
					errs <- nil
					return
				}
			}
		})
	}
	var err error
	select {
	case err = <-errs:
	case <-ctx.Done():
		err = ctx.Err()
	}
	cancel()
	wg.Wait()
	return err
}

var (
	_ discovery.Backend = (*backend)(nil)
	_ discovery.Waiter  = (*backend)(nil)
)
