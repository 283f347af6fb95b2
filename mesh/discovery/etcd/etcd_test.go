package etcd_test

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/sluicegw/sluice"
	"github.com/sluicegw/sluice/mesh/discovery"
	"github.com/sluicegw/sluice/mesh/discovery/discoverytest"
	"github.com/sluicegw/sluice/mesh/discovery/etcd"
	"github.com/sluicegw/sluice/pipeline"
)

// etcdServer is a real etcd (Debian's etcd-server package) on loopback
// ports, with its data in a temporary directory.
type etcdServer struct {
	endpoint string
	cmd      *exec.Cmd
	done     chan struct{}
}

// startEtcd starts etcd; without the binary the test is skipped, except
// under CI (SLUICE_CI=1), where .ci/run installs it.
func startEtcd(t testing.TB) *etcdServer {
	t.Helper()
	bin, err := exec.LookPath("etcd")
	if err != nil {
		if os.Getenv("SLUICE_CI") != "" {
			t.Fatal("etcd is not installed; .ci/run installs it (apt-get install etcd-server)")
		}
		t.Skip("etcd is not installed (apt-get install etcd-server)")
	}
	client := fmt.Sprintf("http://127.0.0.1:%d", discoverytest.FreePort(t))
	peer := fmt.Sprintf("http://127.0.0.1:%d", discoverytest.FreePort(t))
	cmd := exec.Command(bin, "--name", "t", "--data-dir", t.TempDir(),
		"--listen-client-urls", client, "--advertise-client-urls", client,
		"--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer,
		"--initial-cluster", "t="+peer, "--log-level", "error")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	s := &etcdServer{endpoint: client, cmd: cmd, done: make(chan struct{})}
	go func() { cmd.Wait(); close(s.done) }()
	t.Cleanup(s.stop)
	c := s.client(t)
	discoverytest.Eventually(t, 30*time.Second, "etcd to start", func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		_, err := c.Put(ctx, "/ready", "1")
		return err == nil
	})
	return s
}

func (s *etcdServer) stop() {
	s.cmd.Process.Kill()
	<-s.done
}

func (s *etcdServer) client(t testing.TB) *clientv3.Client {
	t.Helper()
	c, err := clientv3.New(clientv3.Config{Endpoints: []string{s.endpoint}, DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func register(t *testing.T, c *clientv3.Client, service string, u *discoverytest.Upstream, status string) {
	t.Helper()
	b, _ := json.Marshal(discovery.Record{ServiceName: service, InstanceID: u.Name, Address: u.Host, Port: u.Port, Weight: 1, Status: status, Tags: []string{"v1"}})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := c.Put(ctx, "/services/"+service+"/"+u.Name, string(b)); err != nil {
		t.Fatal(err)
	}
}

func deregister(t *testing.T, c *clientv3.Client, service, id string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := c.Delete(ctx, "/services/"+service+"/"+id); err != nil {
		t.Fatal(err)
	}
}

// TestEtcdPoolFollowsRegistry runs a real Gateway and Proxy under
// concurrent load while instances are registered, marked down and
// deregistered in a real etcd, then kills etcd: traffic shifts with the
// registry, no request fails, and the last known instances keep serving
// while the registry and the pool report stale.
func TestEtcdPoolFollowsRegistry(t *testing.T) {
	srv := startEtcd(t)
	c := srv.client(t)
	a, b := discoverytest.NewUpstream(t, "a"), discoverytest.NewUpstream(t, "b")
	register(t, c, "orders", a, "")

	h := discoverytest.Start(t, []sluice.ObjectKind{etcd.Kind}, fmt.Sprintf(`
kind: EtcdServiceRegistry
name: reg
endpoints: [%s]
syncInterval: 500ms
timeout: 1s
`, srv.endpoint), "reg", "orders", "")
	load := h.StartLoad(t, 8)
	load.Only(t, 10*time.Second, "a")

	register(t, c, "orders", b, "")
	load.Only(t, 10*time.Second, "a", "b")

	register(t, c, "orders", a, "DOWN")
	load.Only(t, 10*time.Second, "b")

	register(t, c, "orders", a, "UP")
	load.Only(t, 10*time.Second, "a", "b")

	deregister(t, c, "orders", "b")
	load.Only(t, 10*time.Second, "a")

	// Updating the registry object and the pipeline under load: the new
	// generations take over the instances and the watch.
	if err := h.G.ApplyYAML(context.Background(), strings.NewReader(fmt.Sprintf(`
kind: EtcdServiceRegistry
name: reg
endpoints: [%s]
syncInterval: 400ms
timeout: 1s
---
kind: Pipeline
name: p
filters:
- kind: Proxy
  name: proxy
  pools:
  - serviceRegistry: reg
    serviceName: orders
    timeout: 5s
`, srv.endpoint))); err != nil {
		t.Fatal(err)
	}
	load.Only(t, 10*time.Second, "a")
	register(t, c, "orders", b, "")
	load.Only(t, 10*time.Second, "a", "b")
	deregister(t, c, "orders", "b")
	load.Only(t, 10*time.Second, "a")

	st := h.ObjectStatus("reg")
	if st["lastSync"] == nil || st["stale"] != false {
		t.Errorf("registry status %v", st)
	}
	if js, _ := json.Marshal(st); !strings.Contains(string(js), `"port":`+fmt.Sprint(a.Port)) {
		t.Errorf("registry status lacks instance a: %s", js)
	}

	srv.stop()
	discoverytest.Eventually(t, 20*time.Second, "the registry to report stale", h.RegistryStale)
	discoverytest.Eventually(t, 5*time.Second, "the pool to report stale", h.PoolStale)
	load.Only(t, 10*time.Second, "a")

	load.Stop()
	if n, last := load.Failed(); n != 0 {
		t.Fatalf("%d requests failed; last: %s", n, last)
	}
}

func TestSpecErrorsNameTheField(t *testing.T) {
	for _, tt := range []struct{ yaml, field string }{
		{"endpoints: []", "endpoints"},
		{"endpoints: [http://x]\nprefix: services", "prefix"},
		{"endpoints: [http://x]\npassword: p", "username"},
		{"endpoints: [http://x]\nsyncInterval: -1s", "syncInterval"},
		{"endpoints: [http://x]\ntls: {certFile: c}", "tls.certFile"},
		{"endpoints: [http://x]\nbogus: 1", "bogus"},
	} {
		g, err := sluice.New(sluice.WithObjectKinds(etcd.Kind))
		if err != nil {
			t.Fatal(err)
		}
		err = g.ApplyYAML(context.Background(), strings.NewReader("kind: EtcdServiceRegistry\nname: r\n"+tt.yaml+"\n"))
		if err == nil || !strings.Contains(err.Error(), tt.field) {
			t.Errorf("%q: error %v, want one naming %s", tt.yaml, err, tt.field)
		}
		g.Shutdown(context.Background())
	}
}

// BenchmarkEtcdChangeToNotify measures how long a put to a real etcd takes
// to reach a watcher of the registry: the watch event, the re-listing and
// the notification.
func BenchmarkEtcdChangeToNotify(b *testing.B) {
	srv := startEtcd(b)
	obj, err := etcd.Kind.Build(sluice.Env{Name: "reg"}, sluice.NewSpec(etcd.KindName, "reg", map[string]any{"endpoints": []string{srv.endpoint}}))
	if err != nil {
		b.Fatal(err)
	}
	reg := obj.(pipeline.ServiceRegistry)
	ch := make(chan struct{}, 1)
	stop := reg.Watch("orders", func() {
		select {
		case ch <- struct{}{}:
		default:
		}
	})
	defer stop()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); obj.(sluice.Controller).Run(ctx) }()
	defer func() { cancel(); <-done; obj.Close() }()
	c, err := clientv3.New(clientv3.Config{Endpoints: []string{srv.endpoint}, Logger: zap.NewNop()})
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	<-ch // the first sync
	for i := 0; b.Loop(); i++ {
		v := fmt.Sprintf(`{"address":"127.0.0.1","port":%d}`, 1000+i%1000)
		if _, err := c.Put(context.Background(), "/services/orders/x", v); err != nil {
			b.Fatal(err)
		}
		<-ch
	}
}
