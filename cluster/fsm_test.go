package cluster

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"testing"
	"time"

	"github.com/hashicorp/raft"

	"github.com/sluicegw/sluice"
)

func applyCmd(t *testing.T, f *fsm, index uint64, c command) applyResult {
	t.Helper()
	b, err := json.Marshal(c)
	if err != nil {
		t.Fatal(err)
	}
	return f.Apply(&raft.Log{Index: index, Type: raft.LogCommand, Data: b}).(applyResult)
}

func put(name, spec string) sluice.Op {
	return sluice.Op{Kind: "Pipeline", Name: name, Spec: []byte(spec)}
}

// TestFSMCommit: revisions count commits, a commit is atomic, a repeated
// commit ID changes nothing and answers the first revision, and a bad op
// is refused by the state machine itself.
func TestFSMCommit(t *testing.T) {
	f := newFSM()
	if r := applyCmd(t, f, 1, command{Type: cmdCommit, ID: "x", Ops: []sluice.Op{put("a", "1"), put("b", "2")}}); r.err != nil || r.rev != 1 {
		t.Fatalf("first commit: %+v", r)
	}
	if r := applyCmd(t, f, 2, command{Type: cmdCommit, ID: "x", Ops: []sluice.Op{put("a", "changed")}}); r.err != nil || r.rev != 1 {
		t.Fatalf("a retried commit: %+v, want revision 1 and no change", r)
	}
	if r := applyCmd(t, f, 3, command{Type: cmdCommit, ID: "y", Ops: []sluice.Op{{Delete: true, Kind: "Pipeline", Name: "b"}}}); r.err != nil || r.rev != 2 {
		t.Fatalf("delete: %+v", r)
	}
	if r := applyCmd(t, f, 4, command{Type: cmdCommit, ID: "z", Ops: []sluice.Op{{Kind: "Pipeline"}}}); !errors.Is(r.err, ErrBadRequest) {
		t.Fatalf("an op without a name: %+v, want ErrBadRequest", r)
	}
	if r := f.Apply(&raft.Log{Index: 5, Type: raft.LogCommand, Data: []byte("{")}).(applyResult); !errors.Is(r.err, ErrBadRequest) {
		t.Fatalf("garbage: %+v, want ErrBadRequest", r)
	}
	recs, rev := f.list()
	if rev != 2 || len(recs) != 1 || recs[0].Name != "a" || string(recs[0].Spec) != "1" || recs[0].Revision != 1 {
		t.Fatalf("records %+v at revision %d", recs, rev)
	}
	if idx, _ := f.position(); idx != 5 {
		t.Errorf("applied index %d, want 5", idx)
	}
}

// TestFSMWatch: a watch replays the history after its revision and then
// follows; a watch from before the kept history is refused with
// sluice.ErrCompacted.
func TestFSMWatch(t *testing.T) {
	f := newFSM()
	defer f.close()
	applyCmd(t, f, 1, command{Type: cmdCommit, Ops: []sluice.Op{put("a", "1")}})
	applyCmd(t, f, 2, command{Type: cmdCommit, Ops: []sluice.Op{put("b", "1"), put("c", "1")}})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ch, err := f.watch(ctx, 1)
	if err != nil {
		t.Fatal(err)
	}
	applyCmd(t, f, 3, command{Type: cmdCommit, Ops: []sluice.Op{{Delete: true, Kind: "Pipeline", Name: "a"}}})
	var got []string
	for range 3 {
		select {
		case ev := <-ch:
			got = append(got, ev.Record.Name+map[bool]string{true: "-", false: "+"}[ev.Delete])
		case <-time.After(10 * time.Second):
			t.Fatalf("events so far %v", got)
		}
	}
	if want := "b+ c+ a-"; join(got) != want {
		t.Errorf("events %q, want %q", join(got), want)
	}
	cancel()
	for range ch {
	}

	for i := range historyLimit {
		applyCmd(t, f, uint64(10+i), command{Type: cmdCommit, Ops: []sluice.Op{put("x", "1")}})
	}
	if _, err := f.watch(context.Background(), 1); !errors.Is(err, sluice.ErrCompacted) {
		t.Errorf("a watch from a compacted revision: %v, want ErrCompacted", err)
	}
}

func join(s []string) string {
	var b bytes.Buffer
	for i, x := range s {
		if i > 0 {
			b.WriteByte(' ')
		}
		b.WriteString(x)
	}
	return b.String()
}

type sink struct {
	bytes.Buffer
	cancelled bool
}

func (s *sink) ID() string    { return "test" }
func (s *sink) Cancel() error { s.cancelled = true; return nil }
func (s *sink) Close() error  { return nil }

// TestFSMSnapshotRestore: a snapshot restored into another state machine
// gives the same records, revision, members and remembered commit IDs,
// and a watch behind the snapshot is closed so that its reader lists
// again.
func TestFSMSnapshotRestore(t *testing.T) {
	f := newFSM()
	applyCmd(t, f, 1, command{Type: cmdCommit, ID: "once", Ops: []sluice.Op{put("a", "1")}})
	applyCmd(t, f, 2, command{Type: cmdMember, Member: &Member{ID: "m1", Role: Primary, AdminURL: "https://127.0.0.1:1"}})
	applyCmd(t, f, 3, command{Type: cmdCommit, Ops: []sluice.Op{put("b", "2")}})
	snap, err := f.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	var s sink
	if err := snap.Persist(&s); err != nil {
		t.Fatal(err)
	}
	snap.Release()

	g := newFSM()
	defer g.close()
	applyCmd(t, g, 1, command{Type: cmdCommit, Ops: []sluice.Op{put("stale", "1")}})
	ch, err := g.watch(context.Background(), 0)
	if err != nil {
		t.Fatal(err)
	}
	<-ch // the stale commit
	if err := g.Restore(io.NopCloser(bytes.NewReader(s.Bytes()))); err != nil {
		t.Fatal(err)
	}
	select {
	case _, open := <-ch:
		if open {
			t.Error("a watch behind the snapshot got an event instead of closing")
		}
	case <-time.After(10 * time.Second):
		t.Fatal("a watch behind the snapshot stayed open")
	}
	recs, rev := g.list()
	if rev != 2 || len(recs) != 2 || recs[0].Name != "a" || recs[1].Name != "b" {
		t.Fatalf("restored %+v at revision %d", recs, rev)
	}
	if m, ok := g.member("m1"); !ok || m.AdminURL != "https://127.0.0.1:1" {
		t.Errorf("restored member %+v %v", m, ok)
	}
	if r := applyCmd(t, g, 4, command{Type: cmdCommit, ID: "once", Ops: []sluice.Op{put("a", "again")}}); r.rev != 1 {
		t.Errorf("a commit ID from before the snapshot applied again: %+v", r)
	}
	if _, err := g.watch(context.Background(), 0); !errors.Is(err, sluice.ErrCompacted) {
		t.Errorf("watch from before the snapshot: %v, want ErrCompacted", err)
	}
	if err := g.Restore(io.NopCloser(bytes.NewReader([]byte("not json")))); err == nil {
		t.Error("a corrupt snapshot restored")
	}
}
