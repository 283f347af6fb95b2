package discovery

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/sluicegw/sluice"
	"github.com/sluicegw/sluice/internal/clock"
	"github.com/sluicegw/sluice/pipeline"
)

// ErrNotSynced is what Instances reports before the registry's first sync
// of a service: the gateway has not started the registry yet, or the
// backend has not answered yet.
var ErrNotSynced = errors.New("the registry has not synced yet")

// Backend is what one kind of registry (etcd, ZooKeeper, Consul, …)
// implements: how to list the instances of some services. The Registry
// calls it from its Run goroutine only, never concurrently.
type Backend interface {
	// Fetch returns the instances of each of services, keyed by service
	// name; a service missing from the map has no instances. ctx carries
	// the registry's timeout.
	Fetch(ctx context.Context, services []string) (map[string][]pipeline.ServiceInstance, error)
}

// Waiter is implemented by backends that can watch for changes (etcd
// watches, ZooKeeper watches, Consul blocking queries). Wait returns when
// the instances of services may have changed since the last Fetch, or with
// ctx's error when ctx ends (the registry bounds each wait by its sync
// interval, and cancels it when a new service is watched). Without it, the
// Registry polls every sync interval.
type Waiter interface {
	Wait(ctx context.Context, services []string) error
}

// Options are a Registry's settings.
type Options struct {
	// Kind and Name name the registry object, for logs and status.
	Kind, Name string
	// Logger is where sync failures go; nil discards.
	Logger *slog.Logger
	// SyncInterval is the time between polls, or the longest wait of a
	// Waiter before the registry checks the backend anyway; also the
	// pause before a failed sync is retried. 0 means 10s.
	SyncInterval time.Duration
	// Timeout bounds each Fetch. 0 means 5s.
	Timeout time.Duration
	// Close, when set, is called by Close (to release the backend's
	// client).
	Close func() error
	// Clock times the pauses and stamps the syncs; nil means the real
	// clock. Fetch and Wait deadlines run on the real clock (they are the
	// network's).
	Clock pipeline.Clock
}

// Registry is a service registry object: a pipeline.ServiceRegistry whose
// instances a Backend provides, and a sluice.Controller whose Run keeps
// them in sync. The backend packages build their object kinds on it.
//
// Model: Watch adds a service to the set the registry syncs; Run fetches
// the instances of that set from the backend, keeps them in a cache,
// calls the watchers of the services whose instances changed, and then
// waits (a Waiter's watch, or the sync interval) before it fetches again.
// When a fetch fails, the cache keeps the last known instances, Instances
// reports the error with them (stale), the watchers are told, and the fetch
// is retried after the sync interval. Instances reads the cache only.
type Registry struct {
	opts    Options
	clock   pipeline.Clock
	backend Backend
	log     *slog.Logger
	wake    chan struct{} // a new service is watched

	mu       sync.Mutex
	watches  map[string]map[*watch]struct{}
	cache    map[string][]pipeline.ServiceInstance
	synced   map[string]bool
	err      error     // the last sync's error; nil after a good sync
	lastSync time.Time // the last good sync
	lastErr  time.Time // when err happened
	syncs    uint64
	failures uint64
}

type watch struct {
	notify func()
	mu     sync.Mutex // held while notify runs; stop takes it to wait
	done   bool
}

// NewRegistry returns a Registry of backend. It starts nothing: the
// gateway calls Run.
func NewRegistry(backend Backend, opts Options) *Registry {
	if opts.SyncInterval <= 0 {
		opts.SyncInterval = 10 * time.Second
	}
	if opts.Timeout <= 0 {
		opts.Timeout = 5 * time.Second
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	clk := opts.Clock
	if clk == nil {
		clk = clock.Real()
	}
	return &Registry{
		opts:    opts,
		clock:   clk,
		backend: backend,
		log:     log,
		wake:    make(chan struct{}, 1),
		watches: map[string]map[*watch]struct{}{},
		cache:   map[string][]pipeline.ServiceInstance{},
		synced:  map[string]bool{},
	}
}

// Instances returns the cached instances of service; see
// pipeline.ServiceRegistry.
func (r *Registry) Instances(service string) ([]pipeline.ServiceInstance, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	inst := r.cache[service]
	switch {
	case r.err != nil:
		return inst, fmt.Errorf("%s %q is stale: %w", r.opts.Kind, r.opts.Name, r.err)
	case !r.synced[service]:
		return inst, fmt.Errorf("%s %q: %w", r.opts.Kind, r.opts.Name, ErrNotSynced)
	}
	return inst, nil
}

// Watch adds service to the services the registry syncs; see
// pipeline.ServiceRegistry.
func (r *Registry) Watch(service string, notify func()) (stop func()) {
	w := &watch{notify: notify}
	r.mu.Lock()
	ws, ok := r.watches[service]
	if !ok {
		ws = map[*watch]struct{}{}
		r.watches[service] = ws
	}
	ws[w] = struct{}{}
	r.mu.Unlock()
	if !ok {
		select {
		case r.wake <- struct{}{}:
		default:
		}
	}
	return func() {
		r.mu.Lock()
		if ws := r.watches[service]; ws != nil {
			delete(ws, w)
			if len(ws) == 0 {
				delete(r.watches, service)
			}
		}
		r.mu.Unlock()
		w.mu.Lock()
		w.done = true
		w.mu.Unlock()
	}
}

// services returns the watched services, sorted.
func (r *Registry) services() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]string, 0, len(r.watches))
	for s := range r.watches {
		out = append(out, s)
	}
	slices.Sort(out)
	return out
}

// Run syncs the watched services until ctx ends.
func (r *Registry) Run(ctx context.Context) error {
	for {
		services := r.services()
		fctx, cancel := context.WithTimeout(ctx, r.opts.Timeout)
		got, err := r.backend.Fetch(fctx, services)
		cancel()
		if ctx.Err() != nil {
			return nil
		}
		r.update(services, got, err)
		if err != nil {
			r.log.Warn("service registry sync failed", "kind", r.opts.Kind, "object", r.opts.Name, "error", err)
			if !r.pause(ctx, r.opts.SyncInterval) {
				return nil
			}
			continue
		}
		if w, ok := r.backend.(Waiter); ok && len(services) > 0 {
			if !r.waitChange(ctx, w, services) {
				return nil
			}
			continue
		}
		if !r.pause(ctx, r.opts.SyncInterval) {
			return nil
		}
	}
}

// pause waits d, or until a new service is watched; false when ctx ended.
func (r *Registry) pause(ctx context.Context, d time.Duration) bool {
	t := r.clock.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C():
	case <-r.wake:
	}
	return true
}

// waitChange runs w's Wait, bounded by the sync interval and cut short when
// a new service is watched; false when ctx ended.
func (r *Registry) waitChange(ctx context.Context, w Waiter, services []string) bool {
	wctx, cancel := context.WithTimeout(ctx, r.opts.SyncInterval)
	done := make(chan struct{})
	go func() {
		defer close(done)
		select {
		case <-r.wake:
			cancel()
		case <-wctx.Done():
		}
	}()
	err := w.Wait(wctx, services)
	cancel()
	<-done
	if ctx.Err() != nil {
		return false
	}
	if err != nil && wctx.Err() == nil {
		// The watch broke (not our timeout): a short pause, then fetch,
		// which reports the backend's state.
		r.log.Debug("service registry watch ended", "kind", r.opts.Kind, "object", r.opts.Name, "error", err)
		return r.pause(ctx, min(r.opts.SyncInterval, 200*time.Millisecond))
	}
	return true
}

// update stores the outcome of a fetch of services and calls the watchers
// of the services whose instances changed, or of every service when the
// registry went stale or recovered.
func (r *Registry) update(services []string, got map[string][]pipeline.ServiceInstance, err error) {
	var notify []*watch
	r.mu.Lock()
	now := r.clock.Now()
	changedState := (err == nil) != (r.err == nil)
	if err != nil {
		r.err, r.lastErr = err, now
		r.failures++
	} else {
		r.err, r.lastSync = nil, now
		r.syncs++
	}
	next := map[string][]pipeline.ServiceInstance{}
	for _, svc := range services {
		if _, watched := r.watches[svc]; !watched {
			continue
		}
		inst := r.cache[svc]
		changed := changedState
		if err == nil {
			fresh := sortInstances(got[svc])
			if !r.synced[svc] || !equalInstances(inst, fresh) {
				changed = true
			}
			inst = fresh
			r.synced[svc] = true
		}
		next[svc] = inst
		if changed {
			for w := range r.watches[svc] {
				notify = append(notify, w)
			}
		}
	}
	r.cache = next
	for svc := range r.synced {
		if _, ok := next[svc]; !ok {
			delete(r.synced, svc)
		}
	}
	r.mu.Unlock()
	for _, w := range notify {
		w.mu.Lock()
		if !w.done {
			w.notify()
		}
		w.mu.Unlock()
	}
}

// sortInstances returns the instances sorted by ID, then address and port.
func sortInstances(in []pipeline.ServiceInstance) []pipeline.ServiceInstance {
	out := slices.Clone(in)
	slices.SortStableFunc(out, func(a, b pipeline.ServiceInstance) int {
		if c := strings.Compare(a.ID, b.ID); c != 0 {
			return c
		}
		if c := strings.Compare(a.Address, b.Address); c != 0 {
			return c
		}
		return a.Port - b.Port
	})
	return out
}

func equalInstances(a, b []pipeline.ServiceInstance) bool {
	return slices.EqualFunc(a, b, func(x, y pipeline.ServiceInstance) bool {
		return x.ID == y.ID && x.Service == y.Service && x.Address == y.Address && x.Port == y.Port &&
			x.Scheme == y.Scheme && x.Weight == y.Weight && x.Healthy == y.Healthy &&
			slices.Equal(x.Tags, y.Tags) && mapsEqual(x.Metadata, y.Metadata)
	})
}

func mapsEqual(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || w != v {
			return false
		}
	}
	return true
}

// Status is a registry object's status.
type Status struct {
	// Services are the watched services with their instances.
	Services map[string][]pipeline.ServiceInstance `json:"services" yaml:"services"`
	// LastSync is the time of the last good sync; absent before one.
	LastSync *time.Time `json:"lastSync,omitempty" yaml:"lastSync,omitempty"`
	// Stale is true while the last sync failed: the instances are the last
	// known ones.
	Stale bool `json:"stale" yaml:"stale"`
	// Error is the last sync's error, while Stale.
	Error string `json:"error,omitempty" yaml:"error,omitempty"`
	// LastError is when Error happened.
	LastError *time.Time `json:"lastError,omitempty" yaml:"lastError,omitempty"`
	// Syncs and Failures count the good and failed syncs.
	Syncs    uint64 `json:"syncs" yaml:"syncs"`
	Failures uint64 `json:"failures" yaml:"failures"`
}

// Status returns a *Status.
func (r *Registry) Status() any {
	r.mu.Lock()
	defer r.mu.Unlock()
	st := &Status{Services: map[string][]pipeline.ServiceInstance{}, Syncs: r.syncs, Failures: r.failures}
	for svc, inst := range r.cache {
		st.Services[svc] = slices.Clone(inst)
	}
	if !r.lastSync.IsZero() {
		t := r.lastSync
		st.LastSync = &t
	}
	if r.err != nil {
		t := r.lastErr
		st.Stale, st.Error, st.LastError = true, r.err.Error(), &t
	}
	return st
}

// Close releases the backend's client.
func (r *Registry) Close() error {
	if r.opts.Close != nil {
		return r.opts.Close()
	}
	return nil
}

var (
	_ pipeline.ServiceRegistry = (*Registry)(nil)
	_ sluice.Controller        = (*Registry)(nil)
	_ sluice.Statuser          = (*Registry)(nil)
	_ sluice.Inheritor         = (*Registry)(nil)
)

// Inherit seeds the cache with the instances prev knew, so that an updated
// registry answers with them until its first sync.
func (r *Registry) Inherit(prev sluice.Object) error {
	old, ok := prev.(*Registry)
	if !ok || old == r {
		return nil
	}
	old.mu.Lock()
	defer old.mu.Unlock()
	r.mu.Lock()
	defer r.mu.Unlock()
	for svc, inst := range old.cache {
		r.cache[svc] = inst
		r.synced[svc] = old.synced[svc]
	}
	r.lastSync = old.lastSync
	return nil
}
