package proxy_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/sluicegw/sluice/filters/proxy"
	"github.com/sluicegw/sluice/pipeline"
	"github.com/sluicegw/sluice/pipeline/filtertest"
)

// memRegistry is a pipeline.ServiceRegistry kept in memory: the contract
// a user's own registry implements. set calls the watchers, as a
// registry's goroutine would.
type memRegistry struct {
	mu       sync.Mutex
	inst     map[string][]pipeline.ServiceInstance
	err      error
	watchers map[int]watcher
	next     int
}

type watcher struct {
	service string
	notify  func()
}

func newMemRegistry() *memRegistry {
	return &memRegistry{inst: map[string][]pipeline.ServiceInstance{}, watchers: map[int]watcher{}}
}

func (r *memRegistry) Instances(service string) ([]pipeline.ServiceInstance, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.inst[service], r.err
}

func (r *memRegistry) Watch(service string, notify func()) func() {
	r.mu.Lock()
	defer r.mu.Unlock()
	id := r.next
	r.next++
	r.watchers[id] = watcher{service, notify}
	return func() {
		r.mu.Lock()
		defer r.mu.Unlock()
		delete(r.watchers, id)
	}
}

// set replaces the instances of service (nil inst with an error keeps
// them: the registry lost its backend) and tells the watchers.
func (r *memRegistry) set(service string, err error, inst ...pipeline.ServiceInstance) {
	r.mu.Lock()
	if err == nil || inst != nil {
		r.inst[service] = inst
	}
	r.err = err
	var ws []func()
	for _, w := range r.watchers {
		if w.service == service {
			ws = append(ws, w.notify)
		}
	}
	r.mu.Unlock()
	for _, n := range ws {
		n()
	}
}

func (r *memRegistry) watching() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.watchers)
}

// registries is a filtertest option that gives the filter the registries
// of m by name.
func registries(m map[string]pipeline.ServiceRegistry) filtertest.Option {
	return func(e *pipeline.Env) {
		e.Registries = func(name string) (pipeline.ServiceRegistry, bool) {
			r, ok := m[name]
			return r, ok
		}
	}
}

// instanceOf makes an instance of the backend at rawURL.
func instanceOf(t *testing.T, id, rawURL string, healthy bool, weight int, tags ...string) pipeline.ServiceInstance {
	t.Helper()
	host, port, err := net.SplitHostPort(strings.TrimPrefix(rawURL, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	p, _ := strconv.Atoi(port)
	return pipeline.ServiceInstance{ID: id, Service: "orders", Address: host, Port: p, Healthy: healthy, Weight: weight, Tags: tags}
}

const registryPool = `
pools:
- serviceRegistry: reg
  serviceName: orders
`

func answers(h *filtertest.Harness, n int) map[string]int {
	got := map[string]int{}
	for range n {
		out := h.Get("/")
		if out.Response == nil {
			got["<nil>"]++
			continue
		}
		got[fmt.Sprint(out.Response.StatusCode, " ", out.Body)]++
	}
	return got
}

func TestRegistryPoolFollowsInstances(t *testing.T) {
	t.Parallel()
	a, b := filtertest.NewBackend(t, named("a")), filtertest.NewBackend(t, named("b"))
	reg := newMemRegistry()
	reg.set("orders", nil, instanceOf(t, "a", a.URL, true, 1))
	h := filtertest.New(t, proxy.Kind, registryPool, registries(map[string]pipeline.ServiceRegistry{"reg": reg}))
	if got := answers(h, 4); got["200 a"] != 4 {
		t.Fatalf("answers %v, want a only", got)
	}

	reg.set("orders", nil, instanceOf(t, "a", a.URL, true, 1), instanceOf(t, "b", b.URL, true, 3, "v2"))
	if got := answers(h, 4); got["200 a"] != 2 || got["200 b"] != 2 {
		t.Fatalf("answers %v, want a and b in turn", got)
	}
	servers := h.Filter.(*proxy.Proxy).Pools()[0].Servers()
	if len(servers) != 2 || servers[1].Weight() != 3 || servers[1].Tags()[0] != "v2" || servers[1].URL() != b.URL {
		t.Fatalf("servers %v", servers)
	}
	// a's counters carry over the generations: 1+2+... requests.
	st := status(t, h.Filter)
	if st.Pools[0].Servers[0].Requests != 6 {
		t.Errorf("server a counted %d requests, want 6 across generations", st.Pools[0].Servers[0].Requests)
	}

	// Down instances are skipped.
	reg.set("orders", nil, instanceOf(t, "a", a.URL, false, 1), instanceOf(t, "b", b.URL, true, 3))
	if got := answers(h, 3); got["200 b"] != 3 {
		t.Fatalf("answers %v, want b only", got)
	}

	// No healthy instance: 503.
	reg.set("orders", nil, instanceOf(t, "a", a.URL, false, 1))
	out := h.Get("/")
	if out.Response.StatusCode != http.StatusServiceUnavailable || out.Result != proxy.ResultInternalError {
		t.Fatalf("status %d result %q, want 503 internalError", out.Response.StatusCode, out.Result)
	}
}

func TestRegistryPoolKeepsLastKnownWhenStale(t *testing.T) {
	t.Parallel()
	a := filtertest.NewBackend(t, named("a"))
	reg := newMemRegistry()
	reg.set("orders", nil, instanceOf(t, "a", a.URL, true, 1))
	h := filtertest.New(t, proxy.Kind, registryPool, registries(map[string]pipeline.ServiceRegistry{"reg": reg}))
	reg.set("orders", errors.New("backend unreachable"))
	if got := answers(h, 3); got["200 a"] != 3 {
		t.Fatalf("answers %v, want a", got)
	}
	d := status(t, h.Filter).Pools[0].Discovery
	if d == nil || !d.Stale || !strings.Contains(d.Error, "unreachable") || d.ServiceRegistry != "reg" || d.ServiceName != "orders" {
		t.Fatalf("discovery status %+v, want stale", d)
	}
	b, err := json.Marshal(status(t, h.Filter))
	if err != nil || !strings.Contains(string(b), `"stale":true`) {
		t.Fatalf("status JSON %s, %v", b, err)
	}
	reg.set("orders", nil, instanceOf(t, "a", a.URL, true, 1))
	if d := status(t, h.Filter).Pools[0].Discovery; d.Stale || d.Instances != 1 {
		t.Fatalf("discovery status %+v, want fresh", d)
	}
}

func TestRegistryPoolTagsAndCandidates(t *testing.T) {
	t.Parallel()
	a, b, c := filtertest.NewBackend(t, named("a")), filtertest.NewBackend(t, named("b")), filtertest.NewBackend(t, named("c"))
	reg := newMemRegistry()
	reg.set("orders", nil, instanceOf(t, "a", a.URL, true, 1, "v1"), instanceOf(t, "b", b.URL, true, 1, "v2"))
	h := filtertest.New(t, proxy.Kind, fmt.Sprintf(`
pools:
- serviceRegistry: reg
  serviceName: orders
  serverTags: [v2]
  filter: {headers: {X-Canary: {exact: "yes"}}}
- servers: [{url: %s}]
`, c.URL), registries(map[string]pipeline.ServiceRegistry{"reg": reg}))
	r, _ := http.NewRequest(http.MethodGet, "/", nil)
	r.Header.Set("X-Canary", "yes")
	for range 3 {
		if out := h.Do(r.Clone(r.Context())); out.Body != "b" {
			t.Fatalf("canary answered by %q, want b (the v2 instance)", out.Body)
		}
	}
	if out := h.Get("/"); out.Body != "c" {
		t.Fatalf("main pool answered by %q, want c", out.Body)
	}
}

func TestRegistryPoolInheritsWhenRegistryIsGone(t *testing.T) {
	t.Parallel()
	a := filtertest.NewBackend(t, named("a"))
	reg := newMemRegistry()
	reg.set("orders", nil, instanceOf(t, "a", a.URL, true, 1))
	old, err := filtertest.Build(proxy.Kind, registryPool, registries(map[string]pipeline.ServiceRegistry{"reg": reg}))
	if err != nil {
		t.Fatal(err)
	}
	defer old.(pipeline.Closer).Close()
	// The new generation's registry knows nothing yet (not synced).
	fresh := newMemRegistry()
	fresh.set("orders", pipeline.ErrNoRegistry)
	h := filtertest.New(t, proxy.Kind, registryPool, registries(map[string]pipeline.ServiceRegistry{"reg": fresh}))
	if err := h.Filter.(pipeline.Inheritor).Inherit(old); err != nil {
		t.Fatal(err)
	}
	if out := h.Get("/"); out.Body != "a" {
		t.Fatalf("answered by %q, want a, inherited", out.Body)
	}
	if d := status(t, h.Filter).Pools[0].Discovery; !d.Stale {
		t.Fatalf("discovery status %+v, want stale", d)
	}
}

func TestRegistryPoolClosesItsWatch(t *testing.T) {
	t.Parallel()
	reg := newMemRegistry()
	f, err := filtertest.Build(proxy.Kind, registryPool, registries(map[string]pipeline.ServiceRegistry{"reg": reg}))
	if err != nil {
		t.Fatal(err)
	}
	if reg.watching() != 1 {
		t.Fatalf("%d watches, want 1", reg.watching())
	}
	f.(pipeline.Closer).Close()
	if reg.watching() != 0 {
		t.Fatalf("%d watches after Close, want 0", reg.watching())
	}
}

func TestRegistryPoolValidation(t *testing.T) {
	t.Parallel()
	regs := registries(map[string]pipeline.ServiceRegistry{"reg": newMemRegistry()})
	for _, tt := range []struct{ spec, want string }{
		{"pools:\n- serviceRegistry: reg\n", `pools\[0\]\.serviceName`},
		{"pools:\n- serviceName: orders\n", `pools\[0\]\.serviceRegistry`},
		{"pools:\n- serviceRegistry: reg\n  serviceName: o\n  servers: [{url: 'http://127.0.0.1:1'}]\n", `pools\[0\]\.servers`},
		{"pools:\n- serviceRegistry: nope\n  serviceName: o\n", `pools\[0\]\.serviceRegistry.*no such service registry`},
		{"pools:\n- servers: [{url: 'http://127.0.0.1:1'}]\nmirrorPool:\n  serviceRegistry: reg\n  serviceName: o\n", `mirrorPool\.serviceRegistry`},
	} {
		_, err := filtertest.Build(proxy.Kind, tt.spec, regs)
		if err == nil || !regexp.MustCompile(tt.want).MatchString(err.Error()) {
			t.Errorf("%q: error %v, want one matching %s", tt.spec, err, tt.want)
		}
	}
	// Without registries in the Env at all.
	filtertest.ExpectBuildError(t, proxy.Kind, registryPool, `pools\[0\]\.serviceRegistry`)
}

// BenchmarkRegistryPoolUpdate measures a registry change reaching a pool
// of 100 instances: the new generation built, its state inherited by URL,
// and swapped in.
func BenchmarkRegistryPoolUpdate(b *testing.B) {
	reg := newMemRegistry()
	var lists [2][]pipeline.ServiceInstance
	for i := range 100 {
		in := pipeline.ServiceInstance{ID: strconv.Itoa(i), Address: "127.0.0.1", Port: 10000 + i, Healthy: true, Weight: 1}
		lists[0] = append(lists[0], in)
		in.Healthy = i != 0
		lists[1] = append(lists[1], in)
	}
	reg.set("orders", nil, lists[0]...)
	f, err := filtertest.Build(proxy.Kind, registryPool, registries(map[string]pipeline.ServiceRegistry{"reg": reg}))
	if err != nil {
		b.Fatal(err)
	}
	defer f.(pipeline.Closer).Close()
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		reg.set("orders", nil, lists[i%2]...)
	}
}

// BenchmarkRegistryPoolRequest measures a request through a pool fed by a
// registry (one atomic load more than a static pool).
func BenchmarkRegistryPoolRequest(b *testing.B) {
	a := filtertest.NewBackend(b, named("a"))
	reg := newMemRegistry()
	host, port, _ := net.SplitHostPort(strings.TrimPrefix(a.URL, "http://"))
	p, _ := strconv.Atoi(port)
	reg.set("orders", nil, pipeline.ServiceInstance{ID: "a", Address: host, Port: p, Healthy: true})
	h := filtertest.New(b, proxy.Kind, registryPool, registries(map[string]pipeline.ServiceRegistry{"reg": reg}))
	b.ReportAllocs()
	for b.Loop() {
		if out := h.Get("/"); out.Body != "a" {
			b.Fatalf("answered %q", out.Body)
		}
	}
}

// TestRegistryPoolKeepsHealthByURL ejects a failing instance, then changes
// the instances: the ejection follows the server's URL into the new
// generation.
func TestRegistryPoolKeepsHealthByURL(t *testing.T) {
	t.Parallel()
	a, c := filtertest.NewBackend(t, named("a")), filtertest.NewBackend(t, named("c"))
	bad := filtertest.NewBackend(t, http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		http.Error(w, "broken", http.StatusInternalServerError)
	}))
	reg := newMemRegistry()
	reg.set("orders", nil, instanceOf(t, "a", a.URL, true, 1), instanceOf(t, "bad", bad.URL, true, 1))
	h := filtertest.New(t, proxy.Kind, registryPool+"  outlierDetection: {consecutive5xx: 1, ejectionTime: 1h, maxEjectionPercent: 100}\n",
		registries(map[string]pipeline.ServiceRegistry{"reg": reg}))
	answers(h, 4) // bad answers 500 once and is ejected
	if got := answers(h, 4); got["200 a"] != 4 {
		t.Fatalf("answers %v, want a only once bad is ejected", got)
	}
	reg.set("orders", nil, instanceOf(t, "a", a.URL, true, 1), instanceOf(t, "bad", bad.URL, true, 1), instanceOf(t, "c", c.URL, true, 1))
	// Which of a and c takes the turn of the ejected server depends on
	// where the inherited round-robin cursor stands: both serve, bad none.
	if got := answers(h, 6); got["200 a"]+got["200 c"] != 6 || got["200 a"] == 0 || got["200 c"] == 0 {
		t.Fatalf("answers %v, want a and c: bad stays ejected", got)
	}
	for _, s := range status(t, h.Filter).Pools[0].Servers {
		if s.URL == bad.URL && !s.Ejected {
			t.Errorf("server %s not ejected after the update", s.URL)
		}
	}
}
