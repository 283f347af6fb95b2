package zookeeper_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/go-zookeeper/zk"

	"github.com/sluicegw/sluice"
	"github.com/sluicegw/sluice/mesh/discovery"
	"github.com/sluicegw/sluice/mesh/discovery/discoverytest"
	"github.com/sluicegw/sluice/mesh/discovery/zookeeper"
)

// zkJar is where Debian's zookeeper package puts the server.
const zkJar = "/usr/share/java/zookeeper.jar"

// zkServer is a real standalone ZooKeeper (Debian's zookeeper package)
// on a loopback port, with a generated config and data directory.
type zkServer struct {
	addr string
	cmd  *exec.Cmd
	done chan struct{}
}

// startZooKeeper starts ZooKeeper; without Java or the server's jar the
// test is skipped, except under CI (SLUICE_CI=1), where .ci/run installs
// them.
func startZooKeeper(t *testing.T) *zkServer {
	t.Helper()
	java, err := exec.LookPath("java")
	if _, jerr := os.Stat(zkJar); err != nil || jerr != nil {
		if os.Getenv("SLUICE_CI") != "" {
			t.Fatal("ZooKeeper is not installed; .ci/run installs it (apt-get install zookeeper)")
		}
		t.Skip("ZooKeeper is not installed (apt-get install zookeeper)")
	}
	dir := t.TempDir()
	port := discoverytest.FreePort(t)
	cfg := filepath.Join(dir, "zoo.cfg")
	conf := fmt.Sprintf("tickTime=500\ndataDir=%s\nclientPort=%d\nclientPortAddress=127.0.0.1\nadmin.enableServer=false\nmaxSessionTimeout=60000\n", filepath.Join(dir, "data"), port)
	if err := os.WriteFile(cfg, []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(java, "-Xmx256m", "-cp", "/etc/zookeeper/conf:"+zkJar, "org.apache.zookeeper.server.ZooKeeperServerMain", cfg)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	s := &zkServer{addr: fmt.Sprintf("127.0.0.1:%d", port), cmd: cmd, done: make(chan struct{})}
	go func() { cmd.Wait(); close(s.done) }()
	t.Cleanup(s.stop)
	return s
}

func (s *zkServer) stop() {
	s.cmd.Process.Kill()
	<-s.done
}

// conn connects to s and waits for a session.
func (s *zkServer) conn(t *testing.T) *zk.Conn {
	t.Helper()
	c, _, err := zk.Connect([]string{s.addr}, 10*time.Second, zk.WithLogger(quiet{}))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	discoverytest.Eventually(t, 60*time.Second, "ZooKeeper to start", func() bool {
		return c.State() == zk.StateHasSession
	})
	return c
}

type quiet struct{}

func (quiet) Printf(string, ...any) {}

func put(t *testing.T, c *zk.Conn, p string, data []byte) {
	t.Helper()
	parts := strings.Split(strings.TrimPrefix(p, "/"), "/")
	for i := 1; i < len(parts); i++ {
		_, err := c.Create("/"+strings.Join(parts[:i], "/"), nil, 0, zk.WorldACL(zk.PermAll))
		if err != nil && !errors.Is(err, zk.ErrNodeExists) {
			t.Fatal(err)
		}
	}
	if _, err := c.Create(p, data, 0, zk.WorldACL(zk.PermAll)); errors.Is(err, zk.ErrNodeExists) {
		if _, err := c.Set(p, data, -1); err != nil {
			t.Fatal(err)
		}
	} else if err != nil {
		t.Fatal(err)
	}
}

func register(t *testing.T, c *zk.Conn, u *discoverytest.Upstream, status string) {
	t.Helper()
	b, _ := json.Marshal(discovery.Record{Address: u.Host, Port: u.Port, Weight: 1, Status: status})
	put(t, c, "/services/orders/"+u.Name, b)
}

// TestZooKeeperPoolFollowsRegistry runs a real Gateway and Proxy under
// concurrent load while instances are registered, marked down and
// deregistered in a real ZooKeeper, then kills ZooKeeper: traffic shifts
// with the registry, no request fails, and the last known instances keep
// serving while the registry and the pool report stale.
func TestZooKeeperPoolFollowsRegistry(t *testing.T) {
	srv := startZooKeeper(t)
	c := srv.conn(t)
	a, b := discoverytest.NewUpstream(t, "a"), discoverytest.NewUpstream(t, "b")
	register(t, c, a, "")

	h := discoverytest.Start(t, []sluice.ObjectKind{zookeeper.Kind}, fmt.Sprintf(`
kind: ZookeeperServiceRegistry
name: reg
zkservices: [%s]
prefix: /services
connTimeout: 4s
syncInterval: 500ms
timeout: 1s
`, srv.addr), "reg", "orders", "")
	load := h.StartLoad(t, 8)
	load.Only(t, 10*time.Second, "a")

	register(t, c, b, "")
	load.Only(t, 10*time.Second, "a", "b")

	register(t, c, a, "DOWN")
	load.Only(t, 10*time.Second, "b")

	register(t, c, a, "UP")
	load.Only(t, 10*time.Second, "a", "b")

	if err := c.Delete("/services/orders/b", -1); err != nil {
		t.Fatal(err)
	}
	load.Only(t, 10*time.Second, "a")

	if st := h.ObjectStatus("reg"); st["lastSync"] == nil || st["stale"] != false {
		t.Errorf("registry status %v", st)
	}

	srv.stop()
	discoverytest.Eventually(t, 30*time.Second, "the registry to report stale", h.RegistryStale)
	discoverytest.Eventually(t, 5*time.Second, "the pool to report stale", h.PoolStale)
	load.Only(t, 10*time.Second, "a")

	load.Stop()
	if n, last := load.Failed(); n != 0 {
		t.Fatalf("%d requests failed; last: %s", n, last)
	}
}

func TestSpecErrorsNameTheField(t *testing.T) {
	for _, tt := range []struct{ yaml, field string }{
		{"zkservices: []", "zkservices"},
		{"zkservices: [a:1]\nprefix: services/", "prefix"},
		{"zkservices: [a:1]\nusername: u", "username"},
		{"zkservices: [a:1]\nconnTimeout: -1s", "connTimeout"},
	} {
		g, err := sluice.New(sluice.WithObjectKinds(zookeeper.Kind), sluice.WithLogger(slog.New(slog.DiscardHandler)))
		if err != nil {
			t.Fatal(err)
		}
		err = g.ApplyYAML(context.Background(), strings.NewReader("kind: ZookeeperServiceRegistry\nname: r\n"+tt.yaml+"\n"))
		if err == nil || !strings.Contains(err.Error(), tt.field) {
			t.Errorf("%q: error %v, want one naming %s", tt.yaml, err, tt.field)
		}
		g.Shutdown(context.Background())
	}
}
