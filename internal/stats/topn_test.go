package stats_test

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"sync"
	"testing"

	"github.com/sluicegw/sluice/internal/stats"
)

func TestTopNCapacity(t *testing.T) {
	for _, c := range []int{0, -1, 1<<20 + 1} {
		if _, err := stats.NewTopN(c); !errors.Is(err, stats.ErrCapacity) {
			t.Errorf("NewTopN(%d) error = %v, want ErrCapacity", c, err)
		}
	}
	for _, c := range []int{1, 2, 63, 64, 100, 129, 1000, 4099} {
		top, err := stats.NewTopN(c)
		if err != nil {
			t.Fatal(err)
		}
		if top.Cap() != c {
			t.Errorf("NewTopN(%d).Cap() = %d", c, top.Cap())
		}
		// Far more distinct keys than the capacity.
		for i := range 5 * c {
			top.Add(fmt.Sprintf("/k/%d", i))
		}
		if top.Len() != c || len(top.Top(0)) != c {
			t.Errorf("capacity %d: %d keys tracked, %d listed", c, top.Len(), len(top.Top(0)))
		}
		if top.Adds() != uint64(5*c) {
			t.Errorf("capacity %d: Adds = %d, want %d", c, top.Adds(), 5*c)
		}
	}
}

// zipfStream returns n keys drawn from a Zipf distribution over distinct
// keys (key i is the i-th most likely), and the exact count of each key.
func zipfStream(seed uint64, n, distinct int) ([]string, map[string]uint64) {
	z := rand.NewZipf(rand.New(rand.NewPCG(seed, seed)), 1.2, 1, uint64(distinct-1))
	keys := make([]string, n)
	counts := make(map[string]uint64)
	for i := range keys {
		keys[i] = fmt.Sprintf("/api/%d", z.Uint64())
		counts[keys[i]]++
	}
	return keys, counts
}

// trueTop returns the n keys of counts with the highest counts.
func trueTop(counts map[string]uint64, n int) []string {
	var keys []string
	for k := range counts {
		keys = append(keys, k)
	}
	slices.SortFunc(keys, func(a, b string) int {
		if counts[a] != counts[b] {
			if counts[a] > counts[b] {
				return -1
			}
			return 1
		}
		return 0
	})
	return keys[:n]
}

// checkBounds checks the Space-Saving guarantees on every listed item: the
// true count lies in [Count-Error, Count].
func checkBounds(t *testing.T, items []stats.Item, counts map[string]uint64) {
	t.Helper()
	for _, it := range items {
		c := counts[it.Key]
		if c > it.Count || c < it.Count-it.Error {
			t.Errorf("%s: true count %d outside [%d, %d]", it.Key, c, it.Count-it.Error, it.Count)
		}
	}
}

// TestTopNHeavyHitters runs a skewed stream with many more distinct keys
// than the capacity, with one shard (capacity 100) and with several
// (capacity 1000): the true top keys are found, every count is within its
// bound, and in one shard every key seen more than n/capacity times is
// tracked.
func TestTopNHeavyHitters(t *testing.T) {
	const n = 200000
	keys, counts := zipfStream(3, n, 100000)
	for _, capacity := range []int{100, 1000} {
		t.Run(fmt.Sprint(capacity), func(t *testing.T) {
			top, err := stats.NewTopN(capacity)
			if err != nil {
				t.Fatal(err)
			}
			for _, k := range keys {
				top.Add(k)
			}
			if top.Len() > capacity {
				t.Errorf("tracks %d keys, capacity %d", top.Len(), capacity)
			}
			all := top.Top(0)
			checkBounds(t, all, counts)
			got := top.Top(10)
			want := trueTop(counts, 10)
			for i, it := range got {
				if it.Key != want[i] {
					t.Errorf("top[%d] = %s (%d), want %s (%d)", i, it.Key, it.Count, want[i], counts[want[i]])
				}
			}
			if capacity == 100 { // one shard: the bound holds for the whole stream
				tracked := make(map[string]bool)
				for _, it := range all {
					tracked[it.Key] = true
				}
				for k, c := range counts {
					if c > n/uint64(capacity) && !tracked[k] {
						t.Errorf("%s seen %d times (> %d) is not tracked", k, c, n/capacity)
					}
				}
			}
		})
	}
}

// TestTopNConcurrent adds from several goroutines; run it with -race.
func TestTopNConcurrent(t *testing.T) {
	keys, counts := zipfStream(5, 80000, 10000)
	top, err := stats.NewTopN(512)
	if err != nil {
		t.Fatal(err)
	}
	const workers = 4
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			for i := w; i < len(keys); i += workers {
				top.Add(keys[i])
			}
		})
	}
	wg.Go(func() {
		for range 100 {
			top.Top(5)
		}
	})
	wg.Wait()
	if top.Adds() != uint64(len(keys)) {
		t.Errorf("Adds = %d, want %d", top.Adds(), len(keys))
	}
	checkBounds(t, top.Top(0), counts)
	if got, want := top.Top(1)[0].Key, trueTop(counts, 1)[0]; got != want {
		t.Errorf("top key = %s, want %s", got, want)
	}
}

// TestTopNAllocs checks that adding a tracked key does not allocate.
func TestTopNAllocs(t *testing.T) {
	top, err := stats.NewTopN(1000)
	if err != nil {
		t.Fatal(err)
	}
	keys := make([]string, 1000)
	for i := range keys {
		keys[i] = fmt.Sprintf("/p/%d", i)
		top.Add(keys[i])
	}
	i := 0
	if n := testing.AllocsPerRun(1000, func() {
		top.Add(keys[i%len(keys)])
		i++
	}); n != 0 {
		t.Errorf("Add of a tracked key allocates %.1f times, want 0", n)
	}
}
