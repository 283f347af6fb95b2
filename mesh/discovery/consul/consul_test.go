package consul_test

import (
	"context"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sluicegw/sluice"
	"github.com/sluicegw/sluice/mesh/discovery/consul"
	"github.com/sluicegw/sluice/mesh/discovery/discoverytest"
)

// fakeConsul is an in-process stand-in for Consul's HTTP API: no Consul
// server can be installed here, so the client is tested against this fake,
// which follows Consul's documented /v1/health/service/:service endpoint
// (entries with Node, Service and Checks; X-Consul-Index; blocking queries
// with index and wait; the tag filter; the X-Consul-Token header).
type fakeConsul struct {
	srv   *httptest.Server
	token string

	mu      sync.Mutex
	index   uint64
	changed chan struct{} // closed and replaced at each change
	entries map[string]map[string]entry
	tokens  []string // tokens seen
}

type entry struct {
	addr    string
	port    int
	tags    []string
	weight  int
	passing bool
}

func newFakeConsul(t *testing.T, tlsOn bool, token string) *fakeConsul {
	f := &fakeConsul{index: 1, changed: make(chan struct{}), entries: map[string]map[string]entry{}, token: token}
	h := http.HandlerFunc(f.serve)
	if tlsOn {
		f.srv = httptest.NewTLSServer(h)
	} else {
		f.srv = httptest.NewServer(h)
	}
	t.Cleanup(f.close)
	return f
}

func (f *fakeConsul) close() {
	f.srv.CloseClientConnections()
	f.srv.Close()
}

func (f *fakeConsul) set(service, id string, e entry) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.entries[service] == nil {
		f.entries[service] = map[string]entry{}
	}
	f.entries[service][id] = e
	f.bump()
}

func (f *fakeConsul) remove(service, id string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	delete(f.entries[service], id)
	f.bump()
}

func (f *fakeConsul) bump() {
	f.index++
	close(f.changed)
	f.changed = make(chan struct{})
}

func (f *fakeConsul) serve(w http.ResponseWriter, r *http.Request) {
	svc, ok := strings.CutPrefix(r.URL.Path, "/v1/health/service/")
	if !ok || r.Method != http.MethodGet {
		http.NotFound(w, r)
		return
	}
	f.mu.Lock()
	f.tokens = append(f.tokens, r.Header.Get("X-Consul-Token"))
	f.mu.Unlock()
	if f.token != "" && r.Header.Get("X-Consul-Token") != f.token {
		http.Error(w, "ACL not found", http.StatusForbidden)
		return
	}
	q := r.URL.Query()
	if idx, err := strconv.ParseUint(q.Get("index"), 10, 64); err == nil && idx > 0 {
		wait, err := time.ParseDuration(q.Get("wait"))
		if err != nil || wait <= 0 {
			wait = 5 * time.Minute
		}
		f.mu.Lock()
		cur, ch := f.index, f.changed
		f.mu.Unlock()
		if cur == idx {
			t := time.NewTimer(wait)
			select {
			case <-ch:
			case <-t.C:
			case <-r.Context().Done():
			}
			t.Stop()
		}
	}
	f.mu.Lock()
	var out []map[string]any
	for id, e := range f.entries[svc] {
		if !hasTags(e.tags, q["tag"]) {
			continue
		}
		status := "passing"
		if !e.passing {
			status = "critical"
		}
		out = append(out, map[string]any{
			"Node":    map[string]any{"Node": "node1", "Address": "127.0.0.1"},
			"Service": map[string]any{"ID": id, "Service": svc, "Tags": e.tags, "Address": e.addr, "Port": e.port, "Meta": map[string]string{"scheme": "http"}, "Weights": map[string]int{"Passing": e.weight, "Warning": 1}},
			"Checks":  []map[string]any{{"Node": "node1", "CheckID": "serfHealth", "Status": "passing"}, {"Node": "node1", "CheckID": "service:" + id, "Status": status}},
		})
	}
	idx := f.index
	f.mu.Unlock()
	w.Header().Set("X-Consul-Index", strconv.FormatUint(idx, 10))
	w.Header().Set("Content-Type", "application/json")
	if out == nil {
		out = []map[string]any{}
	}
	json.NewEncoder(w).Encode(out)
}

func hasTags(have, want []string) bool {
	for _, w := range want {
		found := false
		for _, h := range have {
			found = found || h == w
		}
		if !found {
			return false
		}
	}
	return true
}

func (f *fakeConsul) addr() string {
	return strings.TrimPrefix(strings.TrimPrefix(f.srv.URL, "http://"), "https://")
}

// caFile writes the fake's certificate as a CA file.
func (f *fakeConsul) caFile(t *testing.T) string {
	p := filepath.Join(t.TempDir(), "ca.pem")
	b := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: f.srv.Certificate().Raw})
	if err := os.WriteFile(p, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestConsulPoolFollowsRegistry runs a real Gateway and Proxy under
// concurrent load, over TLS with an ACL token, while the fake Consul's
// entries change, then stops the fake: traffic follows the entries, no
// request fails, and the last known instances keep serving, reported
// stale.
func TestConsulPoolFollowsRegistry(t *testing.T) {
	f := newFakeConsul(t, true, "s3cret")
	a, b := discoverytest.NewUpstream(t, "a"), discoverytest.NewUpstream(t, "b")
	f.set("orders", "a", entry{addr: a.Host, port: a.Port, tags: []string{"v1"}, weight: 1, passing: true})
	f.set("orders", "other", entry{addr: a.Host, port: 1, tags: []string{"v0"}, weight: 1, passing: true})

	h := discoverytest.Start(t, []sluice.ObjectKind{consul.Kind}, fmt.Sprintf(`
kind: ConsulServiceRegistry
name: reg
address: %s
scheme: https
token: s3cret
serviceTags: [v1]
tls: {caFile: %s}
syncInterval: 2s
timeout: 1s
`, f.addr(), f.caFile(t)), "reg", "orders", "")
	load := h.StartLoad(t, 8)
	load.Only(t, 10*time.Second, "a")

	f.set("orders", "b", entry{addr: b.Host, port: b.Port, tags: []string{"v1"}, weight: 1, passing: true})
	load.Only(t, 10*time.Second, "a", "b")

	f.set("orders", "a", entry{addr: a.Host, port: a.Port, tags: []string{"v1"}, weight: 1, passing: false})
	load.Only(t, 10*time.Second, "b")

	f.set("orders", "a", entry{addr: a.Host, port: a.Port, tags: []string{"v1"}, weight: 1, passing: true})
	f.remove("orders", "b")
	load.Only(t, 10*time.Second, "a")

	f.close()
	discoverytest.Eventually(t, 20*time.Second, "the registry to report stale", h.RegistryStale)
	discoverytest.Eventually(t, 5*time.Second, "the pool to report stale", h.PoolStale)
	load.Only(t, 10*time.Second, "a")

	load.Stop()
	if n, last := load.Failed(); n != 0 {
		t.Fatalf("%d requests failed; last: %s", n, last)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, tok := range f.tokens {
		if tok != "s3cret" {
			t.Fatalf("a request carried token %q", tok)
		}
	}
}

func TestSpecErrorsNameTheField(t *testing.T) {
	for _, tt := range []struct{ yaml, field string }{
		{"scheme: http", "address"},
		{"address: a:1\nscheme: ftp", "scheme"},
		{"address: a:1\ntls: {keyFile: k}", "tls.certFile"},
		{"address: a:1\nsyncInterval: -1s", "syncInterval"},
	} {
		g, err := sluice.New(sluice.WithObjectKinds(consul.Kind))
		if err != nil {
			t.Fatal(err)
		}
		err = g.ApplyYAML(context.Background(), strings.NewReader("kind: ConsulServiceRegistry\nname: r\n"+tt.yaml+"\n"))
		if err == nil || !strings.Contains(err.Error(), tt.field) {
			t.Errorf("%q: error %v, want one naming %s", tt.yaml, err, tt.field)
		}
		g.Shutdown(context.Background())
	}
}
