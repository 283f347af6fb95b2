package stats

import (
	"math/rand/v2"
	"testing"
	"unsafe"
)

// TestBuckets checks the bucket layout: every value falls inside its bucket,
// the buckets tile the range without gaps, and a bucket's midpoint is within
// RelativeError of every value in it.
func TestBuckets(t *testing.T) {
	var next uint64
	for i := range numBuckets {
		lo, w := bucketRange(i)
		if lo != next {
			t.Fatalf("bucket %d starts at %d, want %d", i, lo, next)
		}
		next = lo + w
		mid := bucketMid(i)
		for _, v := range []uint64{lo, lo + w/2, lo + w - 1} {
			if got := bucketOf(v); got != i {
				t.Fatalf("bucketOf(%d) = %d, want %d", v, got, i)
			}
			if d := absDiff(mid, v); float64(d) > RelativeError*float64(v) {
				t.Fatalf("bucket %d: midpoint %d is %d from %d, more than %.4f%%", i, mid, d, v, 100*RelativeError)
			}
		}
	}
	if next != maxValue+1 {
		t.Fatalf("buckets end at %d, want %d", next, uint64(maxValue+1))
	}
	for _, v := range []uint64{maxValue, maxValue + 1, 1 << 62, ^uint64(0)} {
		if got := bucketOf(v); got != numBuckets-1 {
			t.Errorf("bucketOf(%d) = %d, want the last bucket %d", v, got, numBuckets-1)
		}
	}
	r := rand.New(rand.NewPCG(1, 2))
	for range 100000 {
		v := r.Uint64N(maxValue + 1)
		lo, w := bucketRange(bucketOf(v))
		if v < lo || v >= lo+w {
			t.Fatalf("%d outside its bucket [%d, %d)", v, lo, lo+w)
		}
	}
}

func absDiff(a, b uint64) uint64 {
	if a > b {
		return a - b
	}
	return b - a
}

// TestRecorderSize keeps the documented memory footprint honest.
func TestRecorderSize(t *testing.T) {
	if n := unsafe.Sizeof(Recorder{}); n > 40<<10+512 {
		t.Errorf("a Recorder takes %d bytes, the package comment says about 40 KiB", n)
	}
}
