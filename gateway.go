package sluice

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sluicegw/sluice/filters"
	"github.com/sluicegw/sluice/internal/clock"
	"github.com/sluicegw/sluice/pipeline"
)

// Gateway owns a set of objects (HTTP servers, pipelines, controllers),
// builds them from specs, swaps new generations in atomically and closes the
// old ones. It is safe for concurrent use. Many gateways can live in one
// process: nothing is shared between them.
type Gateway struct {
	s       settings
	filters *pipeline.Registry
	kinds   map[string]*ObjectKind // by kind name and alias
	list    []*ObjectKind          // registered kinds, in registration order
	store   Store

	mu      sync.Mutex // serializes changes to objects
	objects map[string]*entry
	tombs   map[string]int64 // name → revision of a local delete the store watch has not passed yet
	rev     int64            // store revision the objects reflect
	started bool
	closed  bool
	runCtx  context.Context
	cancel  context.CancelFunc
	bg      sync.WaitGroup // closing old objects, controllers, the store watch

	tracing *tracingSwitch // what pipelines trace with (tracing.go)

	slotMu     sync.Mutex
	pipelines  map[string]*pipelineSlot
	servers    map[string]*serverSlot
	globals    map[string]*globalSlot
	autocerts  autoCerts     // the live AutoCertManagers
	registries registrySlots // the live service registries, for Env.Registries
}

type entry struct {
	kind *ObjectKind
	spec Spec
	obj  Object
	rev  int64
	run  *controllerRun
}

type controllerRun struct {
	cancel context.CancelFunc
	done   chan struct{}
	err    atomic.Pointer[error]
}

// New returns an empty gateway with the built-in kinds and those the options
// add.
func New(opts ...Option) (*Gateway, error) {
	s := defaultSettings()
	for _, o := range opts {
		if err := o(&s); err != nil {
			return nil, err
		}
	}
	s.logger, s.level = leveled(s.logger, s.level)
	var kinds []pipeline.Kind
	if s.builtins {
		kinds = append(kinds, filters.Builtin()...)
	}
	reg, err := pipeline.NewRegistry(append(kinds, s.filterKinds...)...)
	if err != nil {
		return nil, err
	}
	var policies []pipeline.PolicyKind
	if s.builtins {
		policies = filters.BuiltinPolicies()
	}
	if err := reg.RegisterPolicies(append(policies, s.policyKinds...)...); err != nil {
		return nil, err
	}
	g := &Gateway{
		s:         s,
		filters:   reg,
		kinds:     map[string]*ObjectKind{},
		objects:   map[string]*entry{},
		tombs:     map[string]int64{},
		pipelines: map[string]*pipelineSlot{},
		servers:   map[string]*serverSlot{},
		globals:   map[string]*globalSlot{},
		tracing:   newTracingSwitch(s.tracer),
	}
	for _, k := range append(g.builtinKinds(), s.objectKinds...) {
		if err := g.registerKind(k); err != nil {
			return nil, err
		}
	}
	g.store = s.store
	if g.store == nil {
		g.store = NewMemoryStore()
	}
	// Objects already in a store handed in (a restarted cluster member) are
	// built now, so that the gateway starts with them.
	if s.store != nil {
		if err := g.loadStore(context.Background()); err != nil {
			return nil, err
		}
	}
	return g, nil
}

func (g *Gateway) registerKind(k ObjectKind) error {
	if k.Kind == "" || k.Build == nil {
		return fmt.Errorf("object kind %q: needs a name and a Build function", k.Kind)
	}
	kc := k
	for _, name := range append([]string{k.Kind}, k.Aliases...) {
		if _, dup := g.kinds[name]; dup {
			return fmt.Errorf("%w: %q", ErrDuplicateKind, name)
		}
		g.kinds[name] = &kc
	}
	g.list = append(g.list, &kc)
	return nil
}

// Load makes a gateway with opts and applies the YAML objects read from r.
func Load(r io.Reader, opts ...Option) (*Gateway, error) {
	g, err := New(opts...)
	if err != nil {
		return nil, err
	}
	if err := g.ApplyYAML(context.Background(), r); err != nil {
		g.Shutdown(context.Background())
		return nil, err
	}
	return g, nil
}

// ApplyYAML applies the objects of a multi-document YAML stream; see Apply.
func (g *Gateway) ApplyYAML(ctx context.Context, r io.Reader) error {
	specs, err := ParseSpecs(r)
	if err != nil {
		return err
	}
	return g.Apply(ctx, specs...)
}

// Apply creates or updates objects, all or nothing. Every spec is decoded,
// validated and built first; if any fails, nothing changes and the error (an
// *ObjectError) names the kind, name, field and YAML line. Then each new
// object inherits from the one it replaces, gates bind their listeners (an
// address in use fails the apply), the specs are committed to the store,
// and the new generation is swapped in at once; replaced objects are closed
// after they finish their requests. Specs identical to the running ones are
// left alone.
func (g *Gateway) Apply(ctx context.Context, specs ...Spec) error {
	return g.change(ctx, specs, modeApply)
}

type applyMode int

const (
	modeApply  applyMode = iota // create or update
	modeCreate                  // every object must be new
	modeUpdate                  // every object must exist
	modeSync                    // apply what the store says; do not write it back
)

type pending struct {
	kind *ObjectKind
	spec Spec
	yaml []byte
	obj  Object
	prev *entry
}

func (g *Gateway) change(ctx context.Context, specs []Spec, mode applyMode) error {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.closed {
		return ErrClosed
	}
	_, err := g.changeLocked(ctx, specs, mode, 0)
	return err
}

func (g *Gateway) changeLocked(ctx context.Context, specs []Spec, mode applyMode, syncRev int64) (rev int64, err error) {
	var todo []*pending
	seen := map[string]bool{}
	for _, sp := range specs {
		kind, ok := g.kinds[sp.Kind]
		if !ok {
			return 0, &ObjectError{Kind: sp.Kind, Name: sp.Name, Field: "kind", Line: sp.Line, Err: fmt.Errorf("%w %q", ErrUnknownKind, sp.Kind)}
		}
		sp.Kind = kind.Kind
		if !nameRE.MatchString(sp.Name) {
			return 0, &ObjectError{Kind: sp.Kind, Name: sp.Name, Field: "name", Line: sp.Line, Err: fmt.Errorf("%w: a name is 1-253 letters, digits, '.', '_' or '-', starting with a letter or digit", ErrBadSpec)}
		}
		if seen[sp.Name] {
			return 0, &ObjectError{Kind: sp.Kind, Name: sp.Name, Field: "name", Line: sp.Line, Err: fmt.Errorf("%w: the name appears twice in one apply", ErrBadSpec)}
		}
		seen[sp.Name] = true
		prev := g.objects[sp.Name]
		if prev != nil && prev.kind.Kind != sp.Kind {
			return 0, &ObjectError{Kind: sp.Kind, Name: sp.Name, Field: "name", Line: sp.Line, Err: fmt.Errorf("%w: the name is taken by a %s", ErrExists, prev.kind.Kind)}
		}
		switch {
		case mode == modeCreate && prev != nil:
			return 0, &ObjectError{Kind: sp.Kind, Name: sp.Name, Err: ErrExists}
		case mode == modeUpdate && prev == nil:
			return 0, &ObjectError{Kind: sp.Kind, Name: sp.Name, Err: ErrNotFound}
		}
		y := sp.YAML()
		if prev != nil && bytes.Equal(y, prev.spec.YAML()) {
			continue // unchanged
		}
		todo = append(todo, &pending{kind: kind, spec: sp, yaml: y, prev: prev})
	}
	if len(todo) == 0 {
		return g.rev, nil
	}
	sort.SliceStable(todo, func(i, j int) bool { return todo[i].kind.Category < todo[j].kind.Category })

	live := false
	defer func() {
		if err != nil && !live {
			for _, p := range todo {
				if p.obj != nil {
					g.closeObject(p.obj, true, nil)
				}
			}
		}
	}()
	for _, p := range todo {
		obj, err := p.kind.Build(g.env(p.spec.Name), p.spec)
		if err != nil {
			return 0, specError(p.spec, err)
		}
		if obj == nil {
			return 0, &ObjectError{Kind: p.spec.Kind, Name: p.spec.Name, Err: errors.New("the kind built a nil object")}
		}
		p.obj = obj
	}
	for _, p := range todo {
		if inh, ok := p.obj.(Inheritor); ok && p.prev != nil {
			if err := inh.Inherit(p.prev.obj); err != nil {
				return 0, &ObjectError{Kind: p.spec.Kind, Name: p.spec.Name, Err: fmt.Errorf("inherit: %w", err)}
			}
		}
	}
	if g.started {
		for _, p := range todo {
			if gt, ok := p.obj.(Gate); ok {
				if err := gt.Listen(); err != nil {
					return 0, &ObjectError{Kind: p.spec.Kind, Name: p.spec.Name, Err: err}
				}
			}
		}
	}
	rev = syncRev
	if mode != modeSync {
		ops := make([]Op, len(todo))
		for i, p := range todo {
			ops[i] = Op{Kind: p.spec.Kind, Name: p.spec.Name, Spec: p.yaml}
		}
		if rev, err = g.store.Commit(ctx, ops...); err != nil {
			return 0, fmt.Errorf("store: %w", err)
		}
	}

	// The swap: from here on nothing fails.
	live = true
	g.rev = max(g.rev, rev)
	stopped := make([]<-chan struct{}, len(todo))
	for i, p := range todo {
		e := &entry{kind: p.kind, spec: p.spec, obj: p.obj, rev: rev}
		g.objects[p.spec.Name] = e
		g.publish(p.spec.Name, p.obj)
		if p.prev != nil {
			stopped[i] = g.cancelController(p.prev)
		}
	}
	for i, p := range todo {
		e := g.objects[p.spec.Name]
		if g.started {
			if gt, ok := e.obj.(Gate); ok {
				gt.Serve()
			}
			g.startController(e, stopped[i])
		}
		if p.prev != nil {
			g.closeObject(p.prev.obj, false, stopped[i])
		}
	}
	return rev, nil
}

func specError(sp Spec, err error) error {
	oe := &ObjectError{Kind: sp.Kind, Name: sp.Name, Err: err}
	var fe *pipeline.FieldError
	if errors.As(err, &fe) {
		oe.Field, oe.Line, oe.Err = fe.Field, fe.Line, fe.Err
		if oe.Line == 0 {
			oe.Line = sp.Body.Line(fe.Field)
		}
	}
	if oe.Line == 0 {
		oe.Line = sp.Line
	}
	if !errors.Is(oe.Err, ErrBadSpec) {
		oe.Err = fmt.Errorf("%w: %w", ErrBadSpec, oe.Err)
	}
	return oe
}

func (g *Gateway) env(name string) Env {
	return Env{Logger: g.s.logger.With("object", name), Clock: g.s.clock, Name: name, Gateway: g}
}

// Delete removes an object. Its requests in flight finish first (up to the
// drain timeout) before it is closed.
func (g *Gateway) Delete(ctx context.Context, kind, name string) error {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.closed {
		return ErrClosed
	}
	e, ok := g.objects[name]
	if !ok || (kind != "" && g.kinds[kind] != e.kind) {
		return &ObjectError{Kind: kind, Name: name, Err: ErrNotFound}
	}
	rev, err := g.store.Commit(ctx, Op{Delete: true, Kind: e.kind.Kind, Name: name})
	if err != nil {
		return fmt.Errorf("store: %w", err)
	}
	g.rev = max(g.rev, rev)
	if g.started {
		g.tombs[name] = rev
	}
	g.removeLocked(name, e)
	return nil
}

func (g *Gateway) removeLocked(name string, e *entry) {
	delete(g.objects, name)
	g.publish(name, nil)
	g.closeObject(e.obj, false, g.cancelController(e))
}

// Get returns the spec of the object of that kind (or any kind, if kind is
// empty) and name.
func (g *Gateway) Get(kind, name string) (Spec, bool) {
	g.mu.Lock()
	defer g.mu.Unlock()
	e, ok := g.objects[name]
	if !ok || (kind != "" && g.kinds[kind] != e.kind) {
		return Spec{}, false
	}
	return e.spec, true
}

// List returns the specs of every object of kind (every object if kind is
// empty), sorted by name.
func (g *Gateway) List(kind string) []Spec {
	g.mu.Lock()
	defer g.mu.Unlock()
	var out []Spec
	for _, e := range g.objects {
		if kind == "" || g.kinds[kind] == e.kind {
			out = append(out, e.spec)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// Status is the runtime status of every object.
type Status struct {
	Revision int64          `json:"revision" yaml:"revision"`
	Objects  []ObjectStatus `json:"objects" yaml:"objects"`
}

// ObjectStatus is one object's status.
type ObjectStatus struct {
	Kind     string `json:"kind" yaml:"kind"`
	Name     string `json:"name" yaml:"name"`
	Revision int64  `json:"revision" yaml:"revision"`
	// Status is what the object's Status method reports, if it has one:
	// a pipeline.Status for a Pipeline, a gate.Status for an HTTPServer.
	Status any `json:"status,omitempty" yaml:"status,omitempty"`
	// Error is the error a controller's Run returned, if it stopped.
	Error string `json:"error,omitempty" yaml:"error,omitempty"`
}

// Status reports every object's status, sorted by name.
func (g *Gateway) Status() Status {
	g.mu.Lock()
	defer g.mu.Unlock()
	st := Status{Revision: g.rev, Objects: make([]ObjectStatus, 0, len(g.objects))}
	for name, e := range g.objects {
		st.Objects = append(st.Objects, g.objectStatus(name, e))
	}
	sort.Slice(st.Objects, func(i, j int) bool { return st.Objects[i].Name < st.Objects[j].Name })
	return st
}

func (g *Gateway) objectStatus(name string, e *entry) ObjectStatus {
	os := ObjectStatus{Kind: e.kind.Kind, Name: name, Revision: e.rev}
	if s, ok := e.obj.(Statuser); ok {
		os.Status = s.Status()
	}
	if e.run != nil {
		if err := e.run.err.Load(); err != nil {
			os.Error = (*err).Error()
		}
	}
	return os
}

// Start opens the listeners of the HTTP servers, runs the controllers, and
// follows the store for changes made elsewhere. Objects applied later start
// as they go live. If a listener cannot be opened, Start fails and closes
// what it opened.
func (g *Gateway) Start(ctx context.Context) error {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.closed {
		return ErrClosed
	}
	if g.started {
		return errors.New("gateway already started")
	}
	entries := g.sortedEntries(false)
	var opened []Gate
	for _, e := range entries {
		if gt, ok := e.obj.(Gate); ok {
			if err := gt.Listen(); err != nil {
				for _, o := range opened {
					o.Shutdown(ctx)
				}
				return &ObjectError{Kind: e.kind.Kind, Name: e.spec.Name, Err: err}
			}
			opened = append(opened, gt)
		}
	}
	g.runCtx, g.cancel = context.WithCancel(context.Background())
	g.started = true
	for _, gt := range opened {
		gt.Serve()
	}
	for _, e := range entries {
		g.startController(e, nil)
	}
	watch, err := g.store.Watch(g.runCtx, g.rev)
	if err != nil {
		g.s.logger.Warn("not watching the store", "error", err)
		return nil
	}
	g.bg.Add(1)
	go g.follow(watch)
	return nil
}

// sortedEntries returns the objects by category, ascending or descending.
func (g *Gateway) sortedEntries(desc bool) []*entry {
	out := make([]*entry, 0, len(g.objects))
	for _, e := range g.objects {
		out = append(out, e)
	}
	sort.SliceStable(out, func(i, j int) bool {
		ci, cj := out[i].kind.Category, out[j].kind.Category
		if ci != cj {
			return (ci < cj) != desc
		}
		return out[i].spec.Name < out[j].spec.Name
	})
	return out
}

// startController runs e's Run in its own goroutine, once after is closed
// (the Run of the controller it replaces has returned). Nothing waits for
// a Run while holding the gateway's lock, so Run may call the gateway.
func (g *Gateway) startController(e *entry, after <-chan struct{}) {
	c, ok := e.obj.(Controller)
	if !ok || !g.started {
		return
	}
	ctx, cancel := context.WithCancel(g.runCtx)
	run := &controllerRun{cancel: cancel, done: make(chan struct{})}
	e.run = run
	g.bg.Add(1)
	go func() {
		defer g.bg.Done()
		defer close(run.done)
		if after != nil {
			select {
			case <-after:
			case <-ctx.Done():
				return
			}
		}
		if err := c.Run(ctx); err != nil && ctx.Err() == nil {
			run.err.Store(&err)
			g.s.logger.Error("controller stopped", "object", e.spec.Name, "kind", e.kind.Kind, "error", err)
		}
	}()
}

// cancelController cancels e's Run and returns a channel closed when it has
// returned (nil if e is not running).
func (g *Gateway) cancelController(e *entry) <-chan struct{} {
	if e.run == nil {
		return nil
	}
	e.run.cancel()
	return e.run.done
}

// closeObject closes a replaced or deleted object in the background, once
// after is closed (its controller Run has returned) and its requests have
// finished. now closes an object that never went live, at once.
func (g *Gateway) closeObject(obj Object, now bool, after <-chan struct{}) {
	closeIt := func() {
		ctx, cancel := context.WithTimeout(context.Background(), g.s.drainTimeout)
		defer cancel()
		if err := shutdownObject(ctx, obj); err != nil && !errors.Is(err, context.DeadlineExceeded) {
			g.s.logger.Warn("closing object", "error", err)
		}
	}
	if now {
		closeIt()
		return
	}
	// A gate that is going away frees its address now; only draining its
	// connections waits.
	if sa, ok := obj.(interface{ StopAccepting() }); ok {
		sa.StopAccepting()
	}
	g.bg.Add(1)
	go func() {
		defer g.bg.Done()
		if after != nil {
			<-after
		}
		closeIt()
	}()
}

// shutdownObject closes obj, draining it within ctx if it can drain (its
// Shutdown then stands for Close).
func shutdownObject(ctx context.Context, obj Object) error {
	if sh, ok := obj.(interface{ Shutdown(context.Context) error }); ok {
		return sh.Shutdown(ctx)
	}
	return obj.Close()
}

// follow applies the changes other writers commit to the store. When the
// store closes the watch because this gateway fell behind its history, it
// resynchronises from a List and watches again.
func (g *Gateway) follow(watch <-chan Event) {
	defer g.bg.Done()
	for {
		for ev := range watch {
			g.mu.Lock()
			if !g.closed {
				if err := g.applyEvent(ev); err != nil {
					g.s.logger.Error("applying a change from the store", "kind", ev.Record.Kind, "name", ev.Record.Name, "revision", ev.Revision, "error", err)
				}
				g.rev = max(g.rev, ev.Revision)
			}
			g.mu.Unlock()
		}
		for {
			if g.runCtx.Err() != nil {
				return
			}
			rev, err := g.resync()
			if err == nil {
				watch, err = g.store.Watch(g.runCtx, rev)
			}
			if err == nil {
				break
			}
			g.s.logger.Error("resynchronising with the store", "error", err)
			if !clock.Sleep(g.s.clock, time.Second, g.runCtx.Done()) {
				return
			}
		}
	}
}

// resync makes the objects what the store holds now, one object at a time
// (one that fails to build is logged and left as it was), and returns the
// store's revision.
func (g *Gateway) resync() (int64, error) {
	records, rev, err := g.store.List(g.runCtx)
	if err != nil {
		return 0, err
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.closed {
		return rev, nil
	}
	inStore := make(map[string]bool, len(records))
	for _, r := range records {
		if internalRecord(r.Kind) {
			continue
		}
		inStore[r.Name] = true
		specs, err := ParseSpecs(bytes.NewReader(r.Spec))
		if err == nil {
			_, err = g.changeLocked(g.runCtx, specs, modeSync, r.Revision)
		}
		if err != nil {
			g.s.logger.Error("resync: applying an object from the store", "kind", r.Kind, "name", r.Name, "error", err)
		}
	}
	for name, e := range g.objects {
		if !inStore[name] {
			g.removeLocked(name, e)
		}
	}
	g.rev = max(g.rev, rev)
	return rev, nil
}

// applyEvent applies one change from the store unless this gateway already
// reflects it: each object remembers the revision that wrote it, and our own
// commits come back with that revision; an object this gateway deleted
// leaves a tombstone, so that its older puts do not bring it back.
func (g *Gateway) applyEvent(ev Event) error {
	if internalRecord(ev.Record.Kind) {
		return nil // not an object: see KindAutoCertManager
	}
	name := ev.Record.Name
	if tomb, ok := g.tombs[name]; ok {
		if ev.Revision <= tomb {
			if ev.Revision == tomb {
				delete(g.tombs, name) // the watch has caught up with the delete
			}
			return nil
		}
		delete(g.tombs, name)
	}
	e, ok := g.objects[name]
	if ok && e.rev >= ev.Revision {
		return nil
	}
	if ev.Delete {
		if ok {
			g.removeLocked(ev.Record.Name, e)
		}
		return nil
	}
	specs, err := ParseSpecs(bytes.NewReader(ev.Record.Spec))
	if err != nil {
		return err
	}
	_, err = g.changeLocked(context.Background(), specs, modeSync, ev.Revision)
	return err
}

// loadStore builds the objects a store already holds.
func (g *Gateway) loadStore(ctx context.Context) error {
	records, rev, err := g.store.List(ctx)
	if err != nil {
		return fmt.Errorf("store: %w", err)
	}
	var specs []Spec
	for _, r := range records {
		if internalRecord(r.Kind) {
			continue
		}
		s, err := ParseSpecs(bytes.NewReader(r.Spec))
		if err != nil {
			return fmt.Errorf("store: %s %q: %w", r.Kind, r.Name, err)
		}
		specs = append(specs, s...)
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	if _, err := g.changeLocked(ctx, specs, modeSync, rev); err != nil {
		return err
	}
	g.rev = rev
	return nil
}

// Shutdown stops the controllers, drains and closes the listeners and the
// pipelines, and waits for everything the gateway started, or for ctx. It
// is idempotent.
func (g *Gateway) Shutdown(ctx context.Context) error {
	g.mu.Lock()
	if g.closed {
		g.mu.Unlock()
		return nil
	}
	g.closed = true
	entries := g.sortedEntries(true)
	var stopped []<-chan struct{}
	for _, e := range entries {
		if done := g.cancelController(e); done != nil {
			stopped = append(stopped, done)
		}
	}
	if g.cancel != nil {
		g.cancel()
	}
	g.mu.Unlock()
	// Controllers stop before the objects they use are closed. They may
	// call the gateway while they stop, so the lock is not held here;
	// closed keeps every change out.
	var errs []error
	for _, done := range stopped {
		select {
		case <-done:
		case <-ctx.Done():
		}
	}
	for _, e := range entries {
		if err := shutdownObject(ctx, e.obj); err != nil {
			errs = append(errs, fmt.Errorf("%s %q: %w", e.kind.Kind, e.spec.Name, err))
		}
		g.publish(e.spec.Name, nil)
	}
	g.mu.Lock()
	g.objects = map[string]*entry{}
	g.mu.Unlock()
	if g.s.store == nil {
		g.store.Close()
	}

	done := make(chan struct{})
	go func() { g.bg.Wait(); close(done) }()
	select {
	case <-done:
	case <-ctx.Done():
		errs = append(errs, ctx.Err())
	}
	return errors.Join(errs...)
}

// FilterKinds returns the filter kinds this gateway's pipelines may use.
func (g *Gateway) FilterKinds() []pipeline.Kind { return g.filters.Kinds() }

// ObjectKinds returns the object kinds this gateway builds.
func (g *Gateway) ObjectKinds() []ObjectKind {
	out := make([]ObjectKind, len(g.list))
	for i, k := range g.list {
		out[i] = *k
	}
	return out
}

// Handler returns the router of the HTTPServer called server, without a
// listener, to mount in another program's mux. It follows updates of the
// server and of its pipelines; once the server is deleted it answers 503.
func (g *Gateway) Handler(server string) (http.Handler, error) {
	g.mu.Lock()
	e, ok := g.objects[server]
	g.mu.Unlock()
	if !ok || e.kind.Kind != KindHTTPServer {
		return nil, &ObjectError{Kind: KindHTTPServer, Name: server, Err: ErrNotFound}
	}
	return g.serverSlot(server), nil
}

// Logger returns the gateway's logger.
func (g *Gateway) Logger() *slog.Logger { return g.s.logger }
