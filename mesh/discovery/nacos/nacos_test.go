package nacos_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sluicegw/sluice"
	"github.com/sluicegw/sluice/mesh/discovery/discoverytest"
	"github.com/sluicegw/sluice/mesh/discovery/nacos"
)

// fakeNacos is an in-process stand-in for a Nacos server: none can be
// installed here, so the client is tested against this fake, which follows
// Nacos's documented open API (POST /nacos/v1/auth/login answering
// accessToken and tokenTtl; GET /nacos/v1/ns/instance/list with
// serviceName, namespaceId, groupName and accessToken, answering hosts
// with instanceId, ip, port, weight, healthy, enabled, metadata; 403 for
// a token it does not know).
type fakeNacos struct {
	srv    *httptest.Server
	mu     sync.Mutex
	hosts  map[string]map[string]any // instanceId → host, of service "orders" in namespace "ns1", group "g1"
	tokens map[string]bool
	logins int
}

func newFakeNacos(t *testing.T) *fakeNacos {
	f := &fakeNacos{hosts: map[string]map[string]any{}, tokens: map[string]bool{}}
	f.srv = httptest.NewServer(http.HandlerFunc(f.serve))
	t.Cleanup(f.close)
	return f
}

func (f *fakeNacos) close() {
	f.srv.CloseClientConnections()
	f.srv.Close()
}

func (f *fakeNacos) set(u *discoverytest.Upstream, healthy, enabled bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.hosts[u.Name] = map[string]any{"instanceId": u.Name, "ip": u.Host, "port": u.Port, "weight": 1.0,
		"healthy": healthy, "enabled": enabled, "metadata": map[string]string{"tags": "v1"}}
}

func (f *fakeNacos) remove(id string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	delete(f.hosts, id)
}

// revoke forgets the tokens handed out, as when they expire.
func (f *fakeNacos) revoke() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.tokens = map[string]bool{}
}

func (f *fakeNacos) serve(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	defer f.mu.Unlock()
	switch {
	case r.URL.Path == "/nacos/v1/auth/login" && r.Method == http.MethodPost:
		if r.PostFormValue("username") != "nacos" || r.PostFormValue("password") != "pw" {
			http.Error(w, "unknown user!", http.StatusForbidden)
			return
		}
		f.logins++
		tok := "tok" + strconv.Itoa(f.logins)
		f.tokens[tok] = true
		json.NewEncoder(w).Encode(map[string]any{"accessToken": tok, "tokenTtl": 18000, "globalAdmin": false})
	case r.URL.Path == "/nacos/v1/ns/instance/list" && r.Method == http.MethodGet:
		q := r.URL.Query()
		if !f.tokens[q.Get("accessToken")] {
			http.Error(w, "token invalid!", http.StatusForbidden)
			return
		}
		hosts := []map[string]any{}
		if q.Get("serviceName") == "orders" && q.Get("namespaceId") == "ns1" && q.Get("groupName") == "g1" {
			for _, h := range f.hosts {
				hosts = append(hosts, h)
			}
		}
		json.NewEncoder(w).Encode(map[string]any{"name": "g1@@" + q.Get("serviceName"), "clusters": "", "cacheMillis": 3000, "hosts": hosts})
	default:
		http.NotFound(w, r)
	}
}

// TestNacosPoolFollowsRegistry runs a real Gateway and Proxy under
// concurrent load while the fake Nacos's instances change health, are
// disabled and leave, and its tokens expire, then stops the fake: traffic
// follows, no request fails, and the last known instances keep serving,
// reported stale.
func TestNacosPoolFollowsRegistry(t *testing.T) {
	f := newFakeNacos(t)
	a, b := discoverytest.NewUpstream(t, "a"), discoverytest.NewUpstream(t, "b")
	f.set(a, true, true)
	host, port, _ := net.SplitHostPort(strings.TrimPrefix(f.srv.URL, "http://"))

	h := discoverytest.Start(t, []sluice.ObjectKind{nacos.Kind}, fmt.Sprintf(`
kind: NacosServiceRegistry
name: reg
servers: [{scheme: http, ipAddr: %s, port: %s, contextPath: /nacos}]
namespace: ns1
group: g1
username: nacos
password: pw
syncInterval: 100ms
timeout: 1s
`, host, port), "reg", "orders", "")
	load := h.StartLoad(t, 8)
	load.Only(t, 10*time.Second, "a")

	f.set(b, true, true)
	load.Only(t, 10*time.Second, "a", "b")

	f.set(a, false, true)
	load.Only(t, 10*time.Second, "b")

	f.set(a, true, false)
	load.Only(t, 10*time.Second, "b")

	f.revoke()
	f.set(a, true, true)
	f.remove("b")
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
	if f.logins < 2 {
		t.Errorf("%d logins, want a second one after the tokens were revoked", f.logins)
	}
}

func TestSpecErrorsNameTheField(t *testing.T) {
	for _, tt := range []struct{ yaml, field string }{
		{"servers: []", "servers"},
		{"servers: [{ipAddr: a, port: 0}]", "servers[0].port"},
		{"servers: [{ipAddr: '', port: 1}]", "servers[0].ipAddr"},
		{"servers: [{ipAddr: a, port: 1, scheme: ftp}]", "servers[0].scheme"},
		{"servers: [{ipAddr: a, port: 1}]\nusername: u", "username"},
	} {
		g, err := sluice.New(sluice.WithObjectKinds(nacos.Kind))
		if err != nil {
			t.Fatal(err)
		}
		err = g.ApplyYAML(context.Background(), strings.NewReader("kind: NacosServiceRegistry\nname: r\n"+tt.yaml+"\n"))
		if err == nil || !strings.Contains(err.Error(), tt.field) {
			t.Errorf("%q: error %v, want one naming %s", tt.yaml, err, tt.field)
		}
		g.Shutdown(context.Background())
	}
}
