package proxy

import (
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sluicegw/sluice/pipeline"
)

// A pool with serviceRegistry and serviceName takes its servers from a
// service registry (pipeline.ServiceRegistry, found by name through
// pipeline.Env.Registries) instead of its servers list:
//
//	pools:
//	- serviceRegistry: orders-etcd      # an EtcdServiceRegistry object
//	  serviceName: orders
//	  serverTags: [v2]                  # optional: instances with these tags
//	  loadBalance: {policy: weightedRandom}
//
// Each healthy instance becomes a server with URL scheme://address:port,
// the instance's weight and tags. The Proxy watches the service: when the
// registry says its instances changed, the pool builds a new generation of
// itself with the new servers and swaps it in atomically. Requests in
// flight finish on the generation they started with; the counters, the
// load-balancing state and the health (active checks, ejections) of the
// servers that stay carry over by URL. When the registry fails, the pool
// keeps the last instances it knew and its status says stale. A pool whose
// service has no healthy instance answers 503 (result internalError), as
// a pool whose servers are all down.

// discoveryPool is the registry-fed state of a Pool. The Pool the Proxy
// holds is a shell (its filter, h2c and health-check settings for the
// Proxy and the checker); every request goes to cur, the generation built
// from the latest instances.
type discoveryPool struct {
	env      pipeline.Env
	field    string
	spec     PoolSpec // the pool's spec without filter; servers filled per generation
	service  string
	registry string
	reg      pipeline.ServiceRegistry
	log      *slog.Logger
	stop     func()

	cur atomic.Pointer[Pool] // nil: no server yet

	mu        sync.Mutex // serialises refresh, inherit and close
	servers   []ServerSpec
	err       error     // the registry's error at the last refresh
	updated   time.Time // when the servers last changed
	instances int       // the instances the registry listed at the last good refresh
	closed    bool
}

// DiscoveryStatus is the registry part of a pool's status.
type DiscoveryStatus struct {
	ServiceRegistry string `json:"serviceRegistry" yaml:"serviceRegistry"`
	ServiceName     string `json:"serviceName" yaml:"serviceName"`
	// Instances is the number of instances the registry listed, healthy
	// or not; the pool's servers are the healthy ones.
	Instances int `json:"instances" yaml:"instances"`
	// Stale is true while the registry cannot refresh the instances: the
	// servers are the last known ones.
	Stale bool `json:"stale" yaml:"stale"`
	// Error is the registry's error while Stale.
	Error string `json:"error,omitempty" yaml:"error,omitempty"`
	// Updated is when the servers last changed.
	Updated *time.Time `json:"updated,omitempty" yaml:"updated,omitempty"`
}

// validateDiscovery checks serviceRegistry and serviceName.
func (p *PoolSpec) validateDiscovery(field string) error {
	switch {
	case p.ServiceRegistry == "" && p.ServiceName != "":
		return pipeline.FieldErr(field+".serviceRegistry", fmt.Errorf("%w: required with serviceName", ErrBadValue))
	case p.ServiceRegistry == "":
		return nil
	case p.ServiceName == "":
		return pipeline.FieldErr(field+".serviceName", fmt.Errorf("%w: required with serviceRegistry", ErrBadValue))
	case len(p.Servers) > 0:
		return pipeline.FieldErr(field+".servers", fmt.Errorf("%w: a pool takes its servers from serviceRegistry or from servers, not both", ErrBadValue))
	case field == "mirrorPool":
		return pipeline.FieldErr(field+".serviceRegistry", fmt.Errorf("%w: not supported in a mirror pool", ErrBadValue))
	}
	return nil
}

// newDiscoveryPool builds the shell Pool of a registry-fed pool and
// watches its service. Without a registry of that name in env, it fails
// naming the field.
func newDiscoveryPool(env pipeline.Env, field string, spec *PoolSpec) (*Pool, error) {
	var reg pipeline.ServiceRegistry
	ok := false
	if env.Registries != nil {
		reg, ok = env.Registries(spec.ServiceRegistry)
	}
	if !ok || reg == nil {
		return nil, pipeline.FieldErr(field+".serviceRegistry", fmt.Errorf("%w: %q: %w", ErrBadValue, spec.ServiceRegistry, pipeline.ErrNoRegistry))
	}
	log := env.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	d := &discoveryPool{
		env:      env,
		field:    field,
		spec:     *spec,
		service:  spec.ServiceName,
		registry: spec.ServiceRegistry,
		reg:      reg,
		log:      log.With("pool", field, "serviceRegistry", spec.ServiceRegistry, "serviceName", spec.ServiceName),
	}
	d.spec.Filter = nil
	d.spec.ServiceRegistry, d.spec.ServiceName = "", ""
	shell := &Pool{
		field: field,
		h2c:   spec.Protocol == ProtocolH2C,
		stats: new(poolStats),
		log:   d.log,
		clock: env.Clock,
		dyn:   d,
	}
	if spec.Filter != nil {
		shell.filter = newMatcher(spec.Filter)
	}
	if spec.HealthCheck != nil {
		shell.check = newHealthCheck(spec.HealthCheck) // so that the checker visits the pool
	}
	d.stop = reg.Watch(spec.ServiceName, d.refresh)
	d.refresh()
	return shell, nil
}

// refresh reads the registry and swaps in a new generation of the pool
// when the servers changed. It runs on the registry's goroutine.
func (d *discoveryPool) refresh() {
	inst, err := d.reg.Instances(d.service)
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed {
		return
	}
	d.err = err
	if err != nil && len(inst) == 0 {
		return // keep the last known servers
	}
	if err == nil {
		d.instances = len(inst)
	}
	var servers []ServerSpec
	for _, in := range inst {
		if !in.Healthy || in.Port < 1 || in.Port > 65535 || in.Weight < 0 {
			continue
		}
		ss := ServerSpec{URL: in.URL(), Tags: slices.Clone(in.Tags), Weight: in.Weight}
		if _, perr := parseServerURL(ss.URL); perr != nil {
			d.log.Warn("instance skipped", "instance", in.ID, "error", perr)
			continue
		}
		if !hasAll(ss.Tags, d.spec.ServerTags) {
			continue
		}
		servers = append(servers, ss)
	}
	d.apply(servers)
}

// apply makes servers the pool's servers, unless they are the current
// ones. Called with d.mu held.
func (d *discoveryPool) apply(servers []ServerSpec) {
	if d.updated.IsZero() && len(servers) == 0 && d.cur.Load() == nil {
		d.servers = servers
		return
	}
	if slices.EqualFunc(servers, d.servers, func(a, b ServerSpec) bool {
		return a.URL == b.URL && a.Weight == b.Weight && slices.Equal(a.Tags, b.Tags)
	}) && (len(servers) == 0) == (d.cur.Load() == nil) {
		return
	}
	d.servers = servers
	d.updated = time.Now()
	if len(servers) == 0 {
		d.cur.Store(nil)
		d.log.Info("no healthy instance")
		return
	}
	spec := d.spec
	spec.Servers = servers
	np, err := newPool(d.env, d.field, &spec)
	if err != nil {
		d.log.Error("cannot build the pool from the registry's instances", "error", err)
		return
	}
	if prev := d.cur.Load(); prev != nil {
		np.inherit(prev)
	}
	d.cur.Store(np)
	d.log.Info("servers updated", "servers", len(servers))
}

// handle sends the request to the current generation.
func (d *discoveryPool) handle(c *pipeline.Context, in *http.Request, rt http.RoundTripper, log *slog.Logger) pipeline.Result {
	p := d.cur.Load()
	if p == nil {
		log.Error("no server available", "pool", d.field, "serviceName", d.service)
		c.Respond(http.StatusServiceUnavailable, "no server available\n")
		return ResultInternalError
	}
	return p.handle(c, in, rt, log)
}

// inherit takes over prev's servers and state: the generation prev serves,
// when this pool has none yet (the registry is down or not synced), and
// the counters and health of the servers with the same URL.
func (d *discoveryPool) inherit(shell, prev *Pool) {
	shell.stats = prev.stats
	var prevCur *Pool
	if prev.dyn != nil {
		prevCur = prev.dyn.cur.Load()
	} else {
		prevCur = prev
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.cur.Load() == nil && prev.dyn != nil {
		prev.dyn.mu.Lock()
		servers := slices.Clone(prev.dyn.servers)
		prev.dyn.mu.Unlock()
		d.apply(servers)
	}
	if cur := d.cur.Load(); cur != nil && prevCur != nil {
		cur.inherit(prevCur)
	}
}

// current returns the generation that serves requests; nil without one.
func (d *discoveryPool) current() *Pool { return d.cur.Load() }

// status is the pool's status: its current generation's, with the
// registry's part.
func (d *discoveryPool) status(shell *Pool) PoolStatus {
	var ps PoolStatus
	if p := d.cur.Load(); p != nil {
		ps = p.status()
	} else {
		ps.Servers = []ServerStatus{}
	}
	ps.Field, ps.Main = shell.field, shell.filter == nil
	// Ask the registry: it may have gone stale since the last refresh.
	_, err := d.reg.Instances(d.service)
	d.mu.Lock()
	ds := &DiscoveryStatus{ServiceRegistry: d.registry, ServiceName: d.service, Instances: d.instances}
	if !d.updated.IsZero() {
		t := d.updated
		ds.Updated = &t
	}
	d.mu.Unlock()
	if err != nil {
		ds.Stale, ds.Error = true, err.Error()
	}
	ps.Discovery = ds
	return ps
}

// close stops the watch.
func (d *discoveryPool) close() {
	d.mu.Lock()
	d.closed = true
	d.mu.Unlock()
	if d.stop != nil {
		d.stop()
	}
}
