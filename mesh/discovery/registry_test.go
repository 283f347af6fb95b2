package discovery_test

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/sluicegw/sluice/mesh/discovery"
	"github.com/sluicegw/sluice/pipeline"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// memBackend is a Backend kept in memory, with an error switch.
type memBackend struct {
	mu      sync.Mutex
	inst    map[string][]pipeline.ServiceInstance
	err     error
	fetches int
}

func (b *memBackend) Fetch(_ context.Context, services []string) (map[string][]pipeline.ServiceInstance, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.fetches++
	if b.err != nil {
		return nil, b.err
	}
	out := map[string][]pipeline.ServiceInstance{}
	for _, s := range services {
		out[s] = b.inst[s]
	}
	return out, nil
}

func (b *memBackend) set(err error, inst ...pipeline.ServiceInstance) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.err = err
	if err == nil {
		b.inst = map[string][]pipeline.ServiceInstance{"orders": inst}
	}
}

func inst(id string, port int) pipeline.ServiceInstance {
	return pipeline.ServiceInstance{ID: id, Service: "orders", Address: "127.0.0.1", Port: port, Healthy: true}
}

// run runs r until the test ends.
func run(t *testing.T, r *discovery.Registry) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); r.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
}

// notified returns a notify func and a channel it signals.
func notified() (func(), chan struct{}) {
	ch := make(chan struct{}, 100)
	return func() { ch <- struct{}{} }, ch
}

func waitFor(t *testing.T, ch chan struct{}, what string) {
	t.Helper()
	select {
	case <-ch:
	case <-time.After(10 * time.Second):
		t.Fatalf("no notification: %s", what)
	}
}

func TestRegistrySyncsWatchedServices(t *testing.T) {
	b := &memBackend{}
	b.set(nil, inst("a", 1))
	r := discovery.NewRegistry(b, discovery.Options{Kind: "Test", Name: "reg", SyncInterval: 5 * time.Millisecond})
	if _, err := r.Instances("orders"); !errors.Is(err, discovery.ErrNotSynced) {
		t.Fatalf("error %v before the first sync, want ErrNotSynced", err)
	}
	notify, ch := notified()
	stop := r.Watch("orders", notify)
	run(t, r)
	waitFor(t, ch, "first sync")
	got, err := r.Instances("orders")
	if err != nil || len(got) != 1 || got[0].ID != "a" {
		t.Fatalf("instances %v, %v", got, err)
	}

	b.set(nil, inst("b", 2), inst("a", 1))
	waitFor(t, ch, "b added")
	if got, _ := r.Instances("orders"); len(got) != 2 || got[0].ID != "a" || got[1].ID != "b" {
		t.Fatalf("instances %v, want a and b sorted by ID", got)
	}

	b.set(errors.New("connection refused"))
	waitFor(t, ch, "stale")
	got, err = r.Instances("orders")
	if err == nil || !strings.Contains(err.Error(), "stale") || len(got) != 2 {
		t.Fatalf("instances %v, %v; want the last known with a stale error", got, err)
	}
	js, _ := json.Marshal(r.Status())
	if !strings.Contains(string(js), `"stale":true`) || !strings.Contains(string(js), "connection refused") || !strings.Contains(string(js), `"lastSync"`) {
		t.Fatalf("status %s", js)
	}

	b.set(nil, inst("a", 1))
	waitFor(t, ch, "recovered")
	if got, err := r.Instances("orders"); err != nil || len(got) != 1 {
		t.Fatalf("instances %v, %v after recovery", got, err)
	}

	stop()
	stop()
	b.set(nil, inst("c", 3))
	b.mu.Lock()
	n := b.fetches
	b.mu.Unlock()
	for {
		b.mu.Lock()
		m := b.fetches
		b.mu.Unlock()
		if m > n+2 {
			break
		}
		time.Sleep(5 * time.Millisecond)
	}
	select {
	case <-ch:
		t.Fatal("notified after stop")
	default:
	}
}

func TestRegistryNotifiesOnlyOnChange(t *testing.T) {
	b := &memBackend{}
	b.set(nil, inst("a", 1))
	r := discovery.NewRegistry(b, discovery.Options{SyncInterval: 2 * time.Millisecond})
	notify, ch := notified()
	r.Watch("orders", notify)
	run(t, r)
	waitFor(t, ch, "first sync")
	for {
		b.mu.Lock()
		n := b.fetches
		b.mu.Unlock()
		if n > 5 {
			break
		}
		time.Sleep(2 * time.Millisecond)
	}
	if len(ch) != 0 {
		t.Fatalf("%d notifications without a change", len(ch))
	}
}

func TestRegistryInheritsTheCache(t *testing.T) {
	b := &memBackend{}
	b.set(nil, inst("a", 1))
	old := discovery.NewRegistry(b, discovery.Options{SyncInterval: time.Millisecond})
	notify, ch := notified()
	old.Watch("orders", notify)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); old.Run(ctx) }()
	waitFor(t, ch, "first sync")
	cancel()
	<-done

	r := discovery.NewRegistry(&memBackend{}, discovery.Options{})
	if err := r.Inherit(old); err != nil {
		t.Fatal(err)
	}
	if got, err := r.Instances("orders"); err != nil || len(got) != 1 {
		t.Fatalf("instances %v, %v; want the inherited ones", got, err)
	}
}

func TestParseRecord(t *testing.T) {
	for _, tt := range []struct {
		in      string
		ok      bool
		healthy bool
	}{
		{`{"address":"10.0.0.1","port":80}`, true, true},
		{`{"address":"10.0.0.1","port":80,"status":"DOWN"}`, true, false},
		{`{"address":"10.0.0.1","port":0}`, false, false},
		{`{"address":"a/b","port":80}`, false, false},
		{`{"address":"h","port":80,"scheme":"ftp"}`, false, false},
		{`{"address":"h","port":80,"weight":-1}`, false, false},
		{`not json`, false, false},
	} {
		got, err := discovery.ParseRecord("orders", "x", []byte(tt.in))
		if (err == nil) != tt.ok || (err == nil && got.Healthy != tt.healthy) {
			t.Errorf("%s: %+v, %v", tt.in, got, err)
		}
	}
}
