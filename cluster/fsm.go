package cluster

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"sort"
	"sync"
	"time"

	"github.com/hashicorp/raft"

	"github.com/sluicegw/sluice"
)

// command is one entry of the raft log. Every member applies the same
// commands in the same order, so every member's state is the same.
type command struct {
	Type string `json:"type"` // cmdCommit, cmdMember or cmdForget
	// ID names a commit so that a retried commit (the leader changed
	// while it was in flight) is applied once: a second command with an
	// ID already seen changes nothing and answers the first revision.
	ID     string      `json:"id,omitempty"`
	Ops    []sluice.Op `json:"ops,omitempty"`
	Member *Member     `json:"member,omitempty"`
}

const (
	cmdCommit = "commit"
	cmdMember = "member"
	cmdForget = "forget"
	cmdNoop   = "noop" // a barrier for linearizable reads
)

// historyLimit bounds the events kept for watchers; one further behind
// lists again (sluice.ErrCompacted).
const historyLimit = 4096

// seenLimit bounds the commit IDs remembered for deduplication. A retry
// comes within seconds; thousands of commits later it cannot come.
const seenLimit = 8192

// applyResult is what fsm.Apply returns for a commit.
type applyResult struct {
	rev int64
	err error
}

// fsm is the replicated state: the object records with their revisions,
// the member metadata and the recently seen commit IDs. raft calls Apply,
// Snapshot and Restore from one goroutine; readers (List, Watch, the
// status pages) take mu.
type fsm struct {
	mu      sync.Mutex
	cond    *sync.Cond
	records map[string]sluice.Record
	rev     int64
	index   uint64 // raft index of the last command applied
	history []sluice.Event
	floor   int64 // every event after floor is in history
	members map[string]Member
	seen    map[string]int64
	order   []string // seen IDs, oldest first
	closed  bool
}

func newFSM() *fsm {
	f := &fsm{records: map[string]sluice.Record{}, members: map[string]Member{}, seen: map[string]int64{}}
	f.cond = sync.NewCond(&f.mu)
	return f
}

func recordKey(kind, name string) string { return kind + "/" + name }

// Apply applies one committed log entry.
func (f *fsm) Apply(l *raft.Log) any {
	var c command
	err := json.Unmarshal(l.Data, &c)
	f.mu.Lock()
	defer f.mu.Unlock()
	defer f.cond.Broadcast()
	f.index = max(f.index, l.Index)
	if err != nil {
		return applyResult{err: fmt.Errorf("%w: undecodable command at index %d: %w", ErrBadRequest, l.Index, err)}
	}
	if c.Type == cmdCommit {
		return f.commit(c)
	}
	if _, dup := f.seen[c.ID]; dup && c.ID != "" {
		return applyResult{rev: f.rev}
	}
	switch c.Type {
	case cmdMember:
		if c.Member != nil && c.Member.ID != "" {
			f.members[c.Member.ID] = *c.Member
		}
	case cmdForget:
		if c.Member != nil {
			delete(f.members, c.Member.ID)
		}
	}
	f.remember(c.ID)
	return applyResult{rev: f.rev}
}

// remember records that the command id has been applied, at the current
// revision.
func (f *fsm) remember(id string) {
	if id == "" {
		return
	}
	f.seen[id] = f.rev
	f.order = append(f.order, id)
	if len(f.order) > seenLimit {
		delete(f.seen, f.order[0])
		f.order = f.order[1:]
	}
}

// await waits until the command id has been applied here, for at most d
// or until ctx ends, and returns the revision it left.
func (f *fsm) await(ctx context.Context, id string, d time.Duration) (int64, bool) {
	ctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	stop := context.AfterFunc(ctx, func() {
		f.mu.Lock()
		f.cond.Broadcast()
		f.mu.Unlock()
	})
	defer stop()
	f.mu.Lock()
	defer f.mu.Unlock()
	for {
		if rev, ok := f.seen[id]; ok {
			return rev, true
		}
		if f.closed || ctx.Err() != nil {
			return 0, false
		}
		f.cond.Wait()
	}
}

func (f *fsm) commit(c command) applyResult {
	if c.ID != "" {
		if rev, ok := f.seen[c.ID]; ok {
			return applyResult{rev: rev}
		}
	}
	if err := checkOps(c.Ops); err != nil {
		return applyResult{err: err}
	}
	f.rev++
	for _, op := range c.Ops {
		k := recordKey(op.Kind, op.Name)
		ev := sluice.Event{Delete: op.Delete, Revision: f.rev, Record: sluice.Record{Kind: op.Kind, Name: op.Name, Revision: f.rev}}
		if op.Delete {
			delete(f.records, k)
		} else {
			r := sluice.Record{Kind: op.Kind, Name: op.Name, Spec: op.Spec, Revision: f.rev}
			f.records[k] = r
			ev.Record = r
		}
		f.history = append(f.history, ev)
	}
	if over := len(f.history) - historyLimit; over > 0 {
		// Cut at a commit boundary: a watcher never sees part of a commit.
		for over < len(f.history) && f.history[over].Revision == f.history[over-1].Revision {
			over++
		}
		f.floor = f.history[over-1].Revision
		f.history = append(f.history[:0:0], f.history[over:]...)
	}
	f.remember(c.ID)
	return applyResult{rev: f.rev}
}

// checkOps rejects ops no store could keep. Node.Commit checks them before
// proposing; the state machine checks again, so that a bad entry in the
// log changes nothing on any member.
func checkOps(ops []sluice.Op) error {
	if len(ops) == 0 {
		return fmt.Errorf("%w: a commit needs at least one op", ErrBadRequest)
	}
	for i, op := range ops {
		if op.Kind == "" || op.Name == "" {
			return fmt.Errorf("%w: ops[%d]: kind and name are required", ErrBadRequest, i)
		}
	}
	return nil
}

// list returns every record sorted by kind and name, and the revision.
func (f *fsm) list() ([]sluice.Record, int64) {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := make([]sluice.Record, 0, len(f.records))
	for _, r := range f.records {
		out = append(out, r)
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Kind != out[j].Kind {
			return out[i].Kind < out[j].Kind
		}
		return out[i].Name < out[j].Name
	})
	return out, f.rev
}

func (f *fsm) member(id string) (Member, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	m, ok := f.members[id]
	return m, ok
}

func (f *fsm) memberList() map[string]Member {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := make(map[string]Member, len(f.members))
	for k, v := range f.members {
		out[k] = v
	}
	return out
}

func (f *fsm) position() (uint64, int64) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.index, f.rev
}

// waitIndex waits until the command at index has been applied here.
func (f *fsm) waitIndex(ctx context.Context, index uint64) error {
	stop := context.AfterFunc(ctx, func() {
		f.mu.Lock()
		f.cond.Broadcast()
		f.mu.Unlock()
	})
	defer stop()
	f.mu.Lock()
	defer f.mu.Unlock()
	for f.index < index {
		if f.closed {
			return sluice.ErrClosed
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		f.cond.Wait()
	}
	return nil
}

// watch streams the events after revision from, as sluice.Store.Watch.
func (f *fsm) watch(ctx context.Context, from int64) (<-chan sluice.Event, error) {
	f.mu.Lock()
	if f.closed {
		f.mu.Unlock()
		return nil, sluice.ErrClosed
	}
	if from < f.floor {
		f.mu.Unlock()
		return nil, sluice.ErrCompacted
	}
	f.mu.Unlock()
	ch := make(chan sluice.Event)
	stop := context.AfterFunc(ctx, func() {
		f.mu.Lock()
		f.cond.Broadcast()
		f.mu.Unlock()
	})
	go func() {
		defer close(ch)
		defer stop()
		last := from
		for {
			f.mu.Lock()
			for !f.closed && ctx.Err() == nil && f.rev <= last && last >= f.floor {
				f.cond.Wait()
			}
			if f.closed || ctx.Err() != nil || last < f.floor {
				// Closed, or behind what is kept (a snapshot was
				// restored): the receiver lists again.
				f.mu.Unlock()
				return
			}
			i := sort.Search(len(f.history), func(i int) bool { return f.history[i].Revision > last })
			batch := append([]sluice.Event(nil), f.history[i:]...)
			f.mu.Unlock()
			for _, ev := range batch {
				select {
				case ch <- ev:
				case <-ctx.Done():
					return
				}
				last = ev.Revision
			}
		}
	}()
	return ch, nil
}

func (f *fsm) close() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.closed = true
	f.cond.Broadcast()
}

// snapshotData is the persisted form of the state.
type snapshotData struct {
	Records  []sluice.Record   `json:"records"`
	Revision int64             `json:"revision"`
	Index    uint64            `json:"index"`
	Members  map[string]Member `json:"members"`
	Seen     []seenID          `json:"seen"`
}

type seenID struct {
	ID       string `json:"id"`
	Revision int64  `json:"revision"`
}

// Snapshot copies the state; Persist writes it out on another goroutine
// while Apply goes on.
func (f *fsm) Snapshot() (raft.FSMSnapshot, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	d := &snapshotData{Revision: f.rev, Index: f.index, Members: make(map[string]Member, len(f.members))}
	for _, r := range f.records {
		d.Records = append(d.Records, r)
	}
	for k, v := range f.members {
		d.Members[k] = v
	}
	for _, id := range f.order {
		d.Seen = append(d.Seen, seenID{ID: id, Revision: f.seen[id]})
	}
	return d, nil
}

// Persist writes the snapshot as JSON.
func (d *snapshotData) Persist(sink raft.SnapshotSink) error {
	if err := json.NewEncoder(sink).Encode(d); err != nil {
		sink.Cancel()
		return err
	}
	return sink.Close()
}

// Release frees nothing: the copy is garbage collected.
func (d *snapshotData) Release() {}

// Restore replaces the state with a snapshot's. Watchers behind the
// snapshot's revision are closed, so that their gateways list again.
func (f *fsm) Restore(rc io.ReadCloser) error {
	defer rc.Close()
	var d snapshotData
	if err := json.NewDecoder(rc).Decode(&d); err != nil {
		return fmt.Errorf("cluster: reading a snapshot: %w", err)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.records = make(map[string]sluice.Record, len(d.Records))
	for _, r := range d.Records {
		f.records[recordKey(r.Kind, r.Name)] = r
	}
	f.rev, f.index = d.Revision, d.Index
	f.history, f.floor = nil, d.Revision
	f.members = d.Members
	if f.members == nil {
		f.members = map[string]Member{}
	}
	f.seen, f.order = make(map[string]int64, len(d.Seen)), nil
	for _, s := range d.Seen {
		f.seen[s.ID] = s.Revision
		f.order = append(f.order, s.ID)
	}
	f.cond.Broadcast()
	return nil
}

var (
	_ raft.FSM         = (*fsm)(nil)
	_ raft.FSMSnapshot = (*snapshotData)(nil)
)
