package stats

import (
	"errors"
	"fmt"
	"hash/maphash"
	"slices"
	"strings"
	"sync"
)

// Errors returned by this package.
var (
	// ErrCapacity means a TopN capacity out of range.
	ErrCapacity = errors.New("topn capacity must be between 1 and 1048576")
)

const (
	maxTopNCapacity = 1 << 20
	// minShardCapacity is the fewest keys a TopN shard holds; smaller
	// capacities get fewer shards.
	minShardCapacity = 64
	maxShards        = 16
)

// TopN finds the most frequent keys (say, request paths) of a stream in
// bounded memory with the Space-Saving algorithm: it tracks at most capacity
// keys with a count each; an untracked key takes the place of the tracked
// key with the smallest count and inherits that count, plus one.
//
// The keys are spread over up to 16 shards by hash, each with its own lock
// and an equal part of the capacity, so that concurrent Adds seldom wait for
// each other. In a shard that holds m keys and has seen n Adds, a reported
// count exceeds the true one by at most the count its key inherited (Item's
// Error), which is at most n/m; and every key seen more than n/m times in
// that shard is tracked. With the shards balanced by the hash, n/m is about
// the total number of Adds divided by the capacity.
//
// Add takes a shard lock for a few hundred nanoseconds at most and does not
// allocate for a key already tracked; a new key costs one copy of the
// string. Memory is capacity times the key length: callers that take keys
// from clients should bound their length first. All methods are safe for
// concurrent use.
type TopN struct {
	seed   maphash.Seed
	shards []topShard
}

type topShard struct {
	mu      sync.Mutex
	index   map[string]int32 // key → entry
	entries []topEntry       // at most capacity, never shrinks
	heap    []heapNode       // one per entry, smallest count first
	adds    uint64
	_       [64]byte // keeps shards' locks off each other's cache lines
}

// topEntry is a tracked key. Its count lives in its heap node, so that the
// heap compares counts without following indexes.
type topEntry struct {
	key string
	err uint64
	pos int32 // index in heap
}

type heapNode struct {
	count uint64
	entry int32
}

// Item is a key with its estimated count.
type Item struct {
	// Key is the key as added.
	Key string `json:"key"`
	// Count is an upper bound of the number of times Key was added.
	Count uint64 `json:"count"`
	// Error bounds the overestimate: the true count lies in
	// [Count-Error, Count]. It is 0 for a key tracked since its first Add.
	Error uint64 `json:"error"`
}

// NewTopN returns an empty TopN that tracks at most capacity keys
// (1 ≤ capacity ≤ 1048576).
func NewTopN(capacity int) (*TopN, error) {
	if capacity < 1 || capacity > maxTopNCapacity {
		return nil, fmt.Errorf("stats: %w, got %d", ErrCapacity, capacity)
	}
	n := 1
	for n*2 <= maxShards && capacity/(n*2) >= minShardCapacity {
		n *= 2
	}
	t := &TopN{seed: maphash.MakeSeed(), shards: make([]topShard, n)}
	for i := range t.shards {
		c := capacity / n
		if i < capacity%n {
			c++
		}
		s := &t.shards[i]
		s.index = make(map[string]int32, c)
		s.entries = make([]topEntry, 0, c)
		s.heap = make([]heapNode, 0, c)
	}
	return t, nil
}

// Add counts one occurrence of key.
func (t *TopN) Add(key string) {
	s := &t.shards[0]
	if len(t.shards) > 1 {
		s = &t.shards[maphash.String(t.seed, key)&uint64(len(t.shards)-1)]
	}
	s.mu.Lock()
	s.add(key)
	s.mu.Unlock()
}

func (s *topShard) add(key string) {
	s.adds++
	if i, ok := s.index[key]; ok {
		p := s.entries[i].pos
		s.heap[p].count++
		s.down(p)
		return
	}
	key = strings.Clone(key) // do not pin the caller's buffer
	if len(s.entries) < cap(s.entries) {
		i := int32(len(s.entries))
		p := int32(len(s.heap))
		s.entries = append(s.entries, topEntry{key: key, pos: p})
		s.heap = append(s.heap, heapNode{count: 1, entry: i})
		s.index[key] = i
		s.up(p)
		return
	}
	// Replace the key with the smallest count, which is at the root.
	i := s.heap[0].entry
	e := &s.entries[i]
	delete(s.index, e.key)
	s.index[key] = i
	e.key, e.err = key, s.heap[0].count
	s.heap[0].count++
	s.down(0)
}

func (s *topShard) swap(a, b int32) {
	s.heap[a], s.heap[b] = s.heap[b], s.heap[a]
	s.entries[s.heap[a].entry].pos = a
	s.entries[s.heap[b].entry].pos = b
}

func (s *topShard) up(p int32) {
	for p > 0 {
		parent := (p - 1) / 2
		if s.heap[p].count >= s.heap[parent].count {
			return
		}
		s.swap(p, parent)
		p = parent
	}
}

func (s *topShard) down(p int32) {
	n := int32(len(s.heap))
	for {
		c := 2*p + 1
		if c >= n {
			return
		}
		if c+1 < n && s.heap[c+1].count < s.heap[c].count {
			c++
		}
		if s.heap[c].count >= s.heap[p].count {
			return
		}
		s.swap(p, c)
		p = c
	}
}

// Top returns up to n tracked keys, highest count first (ties by key); n ≤ 0
// means all of them.
func (t *TopN) Top(n int) []Item {
	var items []Item
	for i := range t.shards {
		s := &t.shards[i]
		s.mu.Lock()
		for _, e := range s.entries {
			items = append(items, Item{Key: e.key, Count: s.heap[e.pos].count, Error: e.err})
		}
		s.mu.Unlock()
	}
	slices.SortFunc(items, func(a, b Item) int {
		if a.Count != b.Count {
			if a.Count > b.Count {
				return -1
			}
			return 1
		}
		return strings.Compare(a.Key, b.Key)
	})
	if n > 0 && len(items) > n {
		items = items[:n]
	}
	return items
}

// Len returns how many keys are tracked.
func (t *TopN) Len() int {
	n := 0
	for i := range t.shards {
		s := &t.shards[i]
		s.mu.Lock()
		n += len(s.entries)
		s.mu.Unlock()
	}
	return n
}

// Adds returns how many times Add was called.
func (t *TopN) Adds() uint64 {
	var n uint64
	for i := range t.shards {
		s := &t.shards[i]
		s.mu.Lock()
		n += s.adds
		s.mu.Unlock()
	}
	return n
}

// Cap returns the most keys t tracks.
func (t *TopN) Cap() int {
	n := 0
	for i := range t.shards {
		n += cap(t.shards[i].entries)
	}
	return n
}
