package sluice_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/sluicegw/sluice"
)

// MemoryStore.Commit trims the history to historyLimit events (store.go
// Commit), but one Commit's events share one revision; a commit of more than
// 4096 ops loses its first events while the compaction check
// (history[0].Revision > last+1) still passes. A watcher is then sent only
// part of an atomic change, with no ErrCompacted/closed channel to tell it.
func TestMemoryStoreWatchKeepsLargeCommitsWhole(t *testing.T) {
	s := sluice.NewMemoryStore()
	defer s.Close()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ch, err := s.Watch(ctx, 0)
	if err != nil {
		t.Fatal(err)
	}
	const n = 5000
	ops := make([]sluice.Op, n)
	for i := range ops {
		ops[i] = sluice.Op{Kind: "Pipeline", Name: fmt.Sprintf("p%d", i), Spec: []byte("x")}
	}
	if _, err := s.Commit(ctx, ops...); err != nil {
		t.Fatal(err)
	}
	got := 0
	closed := false
	timeout := time.After(2 * time.Second)
loop:
	for {
		select {
		case _, ok := <-ch:
			if !ok {
				closed = true
				break loop
			}
			got++
			if got == n {
				break loop
			}
		case <-timeout:
			break loop
		}
	}
	if got != n && !closed {
		t.Errorf("a watcher got %d of the %d events of one commit, and its channel stayed open", got, n)
	}
}
