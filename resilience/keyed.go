package resilience

import (
	"context"
	"hash/maphash"
	"sync"
	"time"

	"github.com/sluicegw/sluice/internal/clock"
)

// KeyedLimiter is a rate limiter per key (a client IP, a header value, a
// route) with bounded memory: it holds at most maxKeys keys and, to make
// room for a new one, drops the least recently used. A dropped key starts
// again with a full bucket when it comes back, which is exact for a key
// whose bucket had refilled (an idle key) and generous otherwise; size
// maxKeys so that active keys fit.
//
// Keys are spread over up to 64 shards by a seeded hash, each with its own
// mutex, map and LRU list, so lookups, insertions and evictions are O(1)
// and parallel requests for different keys rarely meet. The bound is kept
// per shard (the shards' capacities add up to maxKeys), so eviction is LRU
// within a shard. Reserve does not allocate for a key it holds, and reuses
// the evicted entry for a new key.
//
// A KeyedLimiter is safe for concurrent use.
type KeyedLimiter struct {
	g       gcra
	clk     Clock
	epoch   time.Time
	seed    maphash.Seed
	mask    uint64
	shards  []keyShard
	maxKeys int
}

type keyShard struct {
	mu   sync.Mutex
	m    map[string]*keyEntry
	root keyEntry // LRU list sentinel: root.next is the most recent
	cap  int
	_    [64]byte // keep shards' mutexes on separate cache lines
}

type keyEntry struct {
	key        string
	prev, next *keyEntry
	tat        int64
	gen        uint64 // bumped when the entry is reused for another key
}

// NewKeyedLimiter returns a keyed limiter that applies spec to each key,
// holds at most maxKeys keys (at least 1), and is timed by clk (nil means
// the real clock).
func NewKeyedLimiter(spec LimiterSpec, clk Clock, maxKeys int) (*KeyedLimiter, error) {
	if err := spec.Validate(); err != nil {
		return nil, err
	}
	if maxKeys < 1 {
		return nil, invalid("maxKeys", "must be at least 1, got %d", maxKeys)
	}
	n := 1
	for n < 64 && maxKeys/(2*n) >= 128 {
		n *= 2
	}
	clk = orReal(clk)
	k := &KeyedLimiter{
		g:       spec.gcra(),
		clk:     clk,
		epoch:   clk.Now(),
		seed:    maphash.MakeSeed(),
		mask:    uint64(n - 1),
		shards:  make([]keyShard, n),
		maxKeys: maxKeys,
	}
	for i := range k.shards {
		sh := &k.shards[i]
		sh.cap = maxKeys / n
		if i < maxKeys%n {
			sh.cap++
		}
		sh.m = make(map[string]*keyEntry, sh.cap)
		sh.root.next, sh.root.prev = &sh.root, &sh.root
	}
	return k, nil
}

// Reserve takes a permit for key, as Limiter.Reserve does.
func (k *KeyedLimiter) Reserve(key string) (wait time.Duration, ok bool) {
	w, _, _, _, ok := k.reserve(key, k.g.timeout)
	return time.Duration(w), ok
}

func (k *KeyedLimiter) reserve(key string, timeout int64) (wait int64, e *keyEntry, gen uint64, next int64, ok bool) {
	sh := &k.shards[maphash.String(k.seed, key)&k.mask]
	sh.mu.Lock()
	// The clock is read under the lock: a time read before waiting for it
	// could be older than the bucket's state and reject wrongly.
	now := since(k.clk, k.epoch)
	e = sh.lookup(key)
	wait, next, ok = k.g.step(e.tat, now, timeout)
	if ok {
		e.tat = next
	} else {
		wait = k.g.retryAfter(e.tat, now)
	}
	gen = e.gen
	sh.mu.Unlock()
	return wait, e, gen, next, ok
}

// Wait takes a permit for key, sleeping for it on the clock, as
// Limiter.Wait does.
func (k *KeyedLimiter) Wait(ctx context.Context, key string) (ok bool, retryAfter time.Duration) {
	wait, e, gen, next, ok := k.reserve(key, waitBound(ctx, k.clk, k.g.timeout))
	if !ok {
		return false, time.Duration(wait)
	}
	if wait == 0 || clock.Sleep(k.clk, time.Duration(wait), ctx.Done()) {
		return true, 0
	}
	sh := &k.shards[maphash.String(k.seed, key)&k.mask]
	sh.mu.Lock()
	if e.gen == gen && e.tat == next {
		e.tat -= k.g.interval // hand the permit back
	}
	retryAfter = time.Duration(k.g.retryAfter(e.tat, since(k.clk, k.epoch)))
	sh.mu.Unlock()
	return false, retryAfter
}

// Len returns the number of keys held, at most maxKeys.
func (k *KeyedLimiter) Len() int {
	n := 0
	for i := range k.shards {
		sh := &k.shards[i]
		sh.mu.Lock()
		n += len(sh.m)
		sh.mu.Unlock()
	}
	return n
}

// MaxKeys returns the bound on the number of keys held.
func (k *KeyedLimiter) MaxKeys() int { return k.maxKeys }

// lookup returns key's entry, made most recent, creating it (and evicting
// the least recent entry when the shard is full) if needed. sh.mu must be
// held.
func (sh *keyShard) lookup(key string) *keyEntry {
	if e, ok := sh.m[key]; ok {
		if sh.root.next != e {
			e.unlink()
			sh.pushFront(e)
		}
		return e
	}
	var e *keyEntry
	if len(sh.m) >= sh.cap {
		e = sh.root.prev
		e.unlink()
		delete(sh.m, e.key)
		e.gen++
		e.tat = 0
		e.key = key
	} else {
		e = &keyEntry{key: key}
	}
	sh.m[key] = e
	sh.pushFront(e)
	return e
}

func (sh *keyShard) pushFront(e *keyEntry) {
	e.prev, e.next = &sh.root, sh.root.next
	sh.root.next.prev = e
	sh.root.next = e
}

func (e *keyEntry) unlink() {
	e.prev.next = e.next
	e.next.prev = e.prev
	e.prev, e.next = nil, nil
}
