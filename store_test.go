package sluice_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/sluicegw/sluice"
)

func TestMemoryStoreCommitListWatch(t *testing.T) {
	s := sluice.NewMemoryStore()
	defer s.Close()
	ctx := context.Background()
	r1, err := s.Commit(ctx, sluice.Op{Kind: "K", Name: "a", Spec: []byte("kind: K\nname: a\n")}, sluice.Op{Kind: "K", Name: "b", Spec: []byte("x")})
	if err != nil {
		t.Fatal(err)
	}
	r2, _ := s.Commit(ctx, sluice.Op{Delete: true, Kind: "K", Name: "b"})
	if r2 <= r1 {
		t.Errorf("revisions %d then %d", r1, r2)
	}
	recs, rev, _ := s.List(ctx)
	if rev != r2 || len(recs) != 1 || recs[0].Name != "a" || recs[0].Revision != r1 {
		t.Errorf("List = %+v at %d", recs, rev)
	}

	// A watch from 0 replays the history, then follows.
	wctx, cancel := context.WithCancel(ctx)
	ch, err := s.Watch(wctx, 0)
	if err != nil {
		t.Fatal(err)
	}
	want := []struct {
		name string
		del  bool
	}{{"a", false}, {"b", false}, {"b", true}, {"c", false}}
	go s.Commit(ctx, sluice.Op{Kind: "K", Name: "c", Spec: []byte("c")})
	for i, w := range want {
		select {
		case ev := <-ch:
			if ev.Record.Name != w.name || ev.Delete != w.del {
				t.Errorf("event %d = %+v, want %+v", i, ev, w)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("event %d never came", i)
		}
	}
	cancel()
	for range ch {
	}
}

func TestMemoryStoreWatchCompacted(t *testing.T) {
	s := sluice.NewMemoryStore()
	defer s.Close()
	for i := 0; i < 5000; i++ {
		s.Commit(context.Background(), sluice.Op{Kind: "K", Name: "a", Spec: []byte("x")})
	}
	if _, err := s.Watch(context.Background(), 1); !errors.Is(err, sluice.ErrCompacted) {
		t.Errorf("watch from a compacted revision: %v", err)
	}
}

// Two gateways sharing one store behave like two members of a cluster: an
// object applied on one goes live on the other through its store watch.
func TestGatewayFollowsItsStore(t *testing.T) {
	st := sluice.NewMemoryStore()
	defer st.Close()
	g1 := newGateway(t, sluice.WithStore(st))
	g2 := newGateway(t, sluice.WithStore(st))
	if err := g2.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	apply(t, g1, staticPipeline("shared")+"---\n"+serverYAML)
	waitFor(t, func() bool { _, ok := g2.Get("Pipeline", "p"); return ok })
	waitFor(t, func() bool { _, ok := g2.Get("HTTPServer", "server"); return ok })
	h, err := g2.Handler("server")
	if err != nil {
		t.Fatal(err)
	}
	if _, body := get(t, h, "GET", "/p"); body != "shared" {
		t.Errorf("g2 serves %q", body)
	}
	if err := g1.Delete(context.Background(), "Pipeline", "p"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, func() bool { _, ok := g2.Get("Pipeline", "p"); return !ok })

	// A third gateway on the same store starts with what it holds.
	g3 := newGateway(t, sluice.WithStore(st))
	if _, ok := g3.Get("HTTPServer", "server"); !ok {
		t.Error("a new gateway did not load the store's objects")
	}
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met in 10s")
		}
		time.Sleep(5 * time.Millisecond)
	}
}
