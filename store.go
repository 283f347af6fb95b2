package sluice

import (
	"context"
	"errors"
	"sort"
	"sync"
)

// Store keeps the objects' specs. The Gateway writes to it after an apply
// has built successfully and reads from it when it starts; with Start, it
// also watches it, so that changes other writers commit (the other members
// of a cluster) are applied here through the same code path as a local
// Apply. The default store is in memory; package cluster provides one
// replicated with raft.
//
// Revisions are a single counter over the whole store: each Commit returns
// a revision greater than every earlier one, and each Record carries the
// revision that last wrote it.
type Store interface {
	// Commit applies ops atomically: all of them or none. It returns the
	// revision of the change.
	Commit(ctx context.Context, ops ...Op) (int64, error)
	// List returns every record and the store's current revision.
	List(ctx context.Context) ([]Record, int64, error)
	// Watch sends the events of every change after revision from, in order,
	// then the changes as they are committed. The channel is closed when ctx
	// is done, or when the watcher is too far behind for the store to replay
	// what it missed (ErrCompacted: List and Watch again).
	Watch(ctx context.Context, from int64) (<-chan Event, error)
	// Close releases the store.
	Close() error
}

// ErrCompacted: a Watch started from a revision the store no longer keeps.
var ErrCompacted = errors.New("store: revision compacted")

// Record is one stored object.
type Record struct {
	Kind     string `json:"kind"`
	Name     string `json:"name"`
	Spec     []byte `json:"spec"` // one YAML document, kind and name included
	Revision int64  `json:"revision"`
}

// Op is one change in a Commit: a put, or a delete when Delete is set.
type Op struct {
	Delete bool
	Kind   string
	Name   string
	Spec   []byte
}

// Event is a committed change to one record.
type Event struct {
	Delete   bool
	Record   Record // for a delete, Spec is empty
	Revision int64
}

// MemoryStore is the default Store: records in memory, with a bounded
// history of events for Watch.
type MemoryStore struct {
	mu      sync.Mutex
	cond    *sync.Cond
	records map[string]Record
	rev     int64
	history []Event // ascending revisions; at most historyLimit
	closed  bool
}

const historyLimit = 4096

// NewMemoryStore returns an empty in-memory store.
func NewMemoryStore() *MemoryStore {
	s := &MemoryStore{records: map[string]Record{}}
	s.cond = sync.NewCond(&s.mu)
	return s
}

func recordKey(kind, name string) string { return kind + "/" + name }

// Commit applies ops atomically.
func (s *MemoryStore) Commit(_ context.Context, ops ...Op) (int64, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return 0, ErrClosed
	}
	s.rev++
	for _, op := range ops {
		k := recordKey(op.Kind, op.Name)
		ev := Event{Delete: op.Delete, Revision: s.rev, Record: Record{Kind: op.Kind, Name: op.Name, Revision: s.rev}}
		if op.Delete {
			delete(s.records, k)
		} else {
			r := Record{Kind: op.Kind, Name: op.Name, Spec: append([]byte(nil), op.Spec...), Revision: s.rev}
			s.records[k] = r
			ev.Record = r
		}
		s.history = append(s.history, ev)
	}
	if over := len(s.history) - historyLimit; over > 0 {
		// Cut at a commit boundary: a watcher never sees part of a commit.
		for over < len(s.history) && s.history[over].Revision == s.history[over-1].Revision {
			over++
		}
		s.history = append(s.history[:0:0], s.history[over:]...)
	}
	s.cond.Broadcast()
	return s.rev, nil
}

// List returns every record, sorted by kind and name.
func (s *MemoryStore) List(context.Context) ([]Record, int64, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]Record, 0, len(s.records))
	for _, r := range s.records {
		out = append(out, r)
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Kind != out[j].Kind {
			return out[i].Kind < out[j].Kind
		}
		return out[i].Name < out[j].Name
	})
	return out, s.rev, nil
}

// Watch streams events after revision from. It returns ErrCompacted if the
// history no longer reaches back to from.
func (s *MemoryStore) Watch(ctx context.Context, from int64) (<-chan Event, error) {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil, ErrClosed
	}
	if len(s.history) > 0 && s.history[0].Revision > from+1 {
		s.mu.Unlock()
		return nil, ErrCompacted
	}
	s.mu.Unlock()
	ch := make(chan Event)
	stop := context.AfterFunc(ctx, func() {
		s.mu.Lock()
		s.cond.Broadcast()
		s.mu.Unlock()
	})
	go func() {
		defer close(ch)
		defer stop()
		last := from
		for {
			s.mu.Lock()
			for !s.closed && ctx.Err() == nil && s.rev <= last {
				s.cond.Wait()
			}
			if s.closed || ctx.Err() != nil {
				s.mu.Unlock()
				return
			}
			if len(s.history) == 0 || s.history[0].Revision > last+1 {
				s.mu.Unlock()
				return // fell behind the history: the receiver must resync
			}
			i := sort.Search(len(s.history), func(i int) bool { return s.history[i].Revision > last })
			batch := append([]Event(nil), s.history[i:]...)
			s.mu.Unlock()
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

// Close stops every watcher.
func (s *MemoryStore) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.closed = true
	s.cond.Broadcast()
	return nil
}

var _ Store = (*MemoryStore)(nil)
