package proxy

import (
	"slices"
	"strconv"
)

// hashTable maps a key's hash to a server. The hash policies (ipHash,
// headerHash) and the hashing sticky sessions share it. It is built once
// per pool generation from the servers' URLs alone, so every gateway with
// the same server list maps a key to the same server, and is read
// concurrently without locks or allocation.
type hashTable interface {
	lookup(h uint64) *Server
}

// newHashTable builds the table of kind (HashingMaglev when empty) over
// servers, which must not be empty.
func newHashTable(kind string, servers []*Server) hashTable {
	switch kind {
	case HashingRing:
		return newRing(servers)
	case HashingModulo:
		return modulo(servers)
	default:
		return newMaglev(servers, maglevSize(len(servers)))
	}
}

// hashNames returns the names the tables hash for servers: their URLs,
// with the n-th repetition of a URL suffixed by n.
func hashNames(servers []*Server) []string {
	seen := map[string]int{}
	names := make([]string, len(servers))
	for i, s := range servers {
		names[i] = s.url
		if n := seen[s.url]; n > 0 {
			names[i] += "#" + strconv.Itoa(n)
		}
		seen[s.url]++
	}
	return names
}

// hashString is a deterministic 64-bit hash of s: FNV-1a followed by the
// SplitMix64 finaliser, which spreads FNV's weak low bits. It does not
// depend on the process, so gateways agree on it.
func hashString(s string) uint64 {
	const (
		offset = 14695981039346656037
		prime  = 1099511628211
	)
	h := uint64(offset)
	for i := 0; i < len(s); i++ {
		h ^= uint64(s[i])
		h *= prime
	}
	return mix(h)
}

// mix is the SplitMix64 finaliser.
func mix(h uint64) uint64 {
	h ^= h >> 30
	h *= 0xbf58476d1ce4e5b9
	h ^= h >> 27
	h *= 0x94d049bb133111eb
	h ^= h >> 31
	return h
}

// modulo maps a hash to server h mod n: simple, but a change of n moves
// almost every key.
type modulo []*Server

func (m modulo) lookup(h uint64) *Server { return m[h%uint64(len(m))] }

// maglev is Google's Maglev consistent hash (Eisenbud et al., NSDI 2016):
// a lookup table of prime size m in which each server fills entries in the
// order of its own permutation, taking turns, so that each server holds
// m/n entries (±1) and removing one of n servers moves about 1/n of the
// keys (the removed server's, and a few more).
type maglev struct {
	servers []*Server
	table   []uint32 // entry → index into servers
}

// maglevSize returns the table size for n servers: DefaultMaglevTableSize,
// or the first prime of at least 100·n when that is larger.
func maglevSize(n int) int {
	if 100*n <= DefaultMaglevTableSize {
		return DefaultMaglevTableSize
	}
	return nextPrime(100 * n)
}

func nextPrime(n int) int {
	for ; ; n++ {
		if isPrime(n) {
			return n
		}
	}
}

func isPrime(n int) bool {
	if n < 2 {
		return false
	}
	for d := 2; d*d <= n; d++ {
		if n%d == 0 {
			return false
		}
	}
	return true
}

func newMaglev(servers []*Server, m int) *maglev {
	n := len(servers)
	names := hashNames(servers)
	offset := make([]uint64, n)
	skip := make([]uint64, n)
	next := make([]uint64, n)
	for i, name := range names {
		h := hashString(name)
		offset[i] = h % uint64(m)
		skip[i] = mix(h^0x9e3779b97f4a7c15)%uint64(m-1) + 1
	}
	const empty = ^uint32(0)
	table := make([]uint32, m)
	for i := range table {
		table[i] = empty
	}
	for filled := 0; ; {
		for i := range n {
			c := (offset[i] + next[i]*skip[i]) % uint64(m)
			for table[c] != empty {
				next[i]++
				c = (offset[i] + next[i]*skip[i]) % uint64(m)
			}
			table[c] = uint32(i)
			next[i]++
			if filled++; filled == m {
				return &maglev{servers: servers, table: table}
			}
		}
	}
}

func (mg *maglev) lookup(h uint64) *Server {
	return mg.servers[mg.table[h%uint64(len(mg.table))]]
}

// ring is a consistent-hash ring with RingVirtualNodes points per server:
// a key belongs to the first point at or after its hash. Removing a server
// moves only its own keys, each to the next point's server.
type ring struct {
	points  []uint64 // sorted
	servers []*Server
	owner   []uint32 // owner[i]: index into servers of points[i]
}

func newRing(servers []*Server) *ring {
	type point struct {
		h     uint64
		owner uint32
	}
	names := hashNames(servers)
	pts := make([]point, 0, len(servers)*RingVirtualNodes)
	for i, name := range names {
		for v := range RingVirtualNodes {
			pts = append(pts, point{hashString(name + "-" + strconv.Itoa(v)), uint32(i)})
		}
	}
	slices.SortFunc(pts, func(a, b point) int {
		switch {
		case a.h < b.h:
			return -1
		case a.h > b.h:
			return 1
		}
		return int(a.owner) - int(b.owner)
	})
	r := &ring{servers: servers, points: make([]uint64, len(pts)), owner: make([]uint32, len(pts))}
	for i, p := range pts {
		r.points[i], r.owner[i] = p.h, p.owner
	}
	return r
}

func (r *ring) lookup(h uint64) *Server {
	lo, hi := 0, len(r.points)
	for lo < hi {
		m := int(uint(lo+hi) >> 1)
		if r.points[m] < h {
			lo = m + 1
		} else {
			hi = m
		}
	}
	if lo == len(r.points) {
		lo = 0
	}
	return r.servers[r.owner[lo]]
}

var (
	_ hashTable = modulo(nil)
	_ hashTable = (*maglev)(nil)
	_ hashTable = (*ring)(nil)
)
