package ipset

import (
	"errors"
	"math/rand/v2"
	"net/netip"
	"testing"
)

func TestParsePrefix(t *testing.T) {
	tests := []struct{ in, want string }{
		{"10.0.0.0/8", "10.0.0.0/8"},
		{"10.1.2.3/8", "10.0.0.0/8"},
		{"10.1.2.3", "10.1.2.3/32"},
		{" 10.1.2.3 ", "10.1.2.3/32"},
		{"::1", "::1/128"},
		{"2001:db8::/32", "2001:db8::/32"},
		{"::ffff:10.0.0.0/104", "10.0.0.0/8"},
		{"::ffff:10.1.2.3", "10.1.2.3/32"},
		{"::/0", "::/0"},
	}
	for _, tt := range tests {
		p, err := ParsePrefix(tt.in)
		if err != nil || p.String() != tt.want {
			t.Errorf("ParsePrefix(%q) = %v, %v; want %s", tt.in, p, err, tt.want)
		}
	}
	for _, bad := range []string{"", "10.0.0", "10.0.0.0/33", "fe80::1%eth0", "host.example", "1.2.3.4/"} {
		if _, err := ParsePrefix(bad); !errors.Is(err, ErrInvalidPrefix) {
			t.Errorf("ParsePrefix(%q) error %v, want ErrInvalidPrefix", bad, err)
		}
	}
}

func TestFilter(t *testing.T) {
	f, err := NewFilter(
		[]string{"10.0.0.0/8", "2001:db8::/32", "192.168.1.7", "0.0.0.0/0"},
		[]string{"10.1.0.0/16", "10.1.2.3", "2001:db8:bad::/48", "::ffff:172.16.0.0/108"},
		true)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		addr string
		want bool
	}{
		{"10.0.0.1", true},
		{"10.1.0.1", false},        // block inside allow
		{"10.1.2.3", false},        // single blocked address
		{"10.2.0.0", true},         // past the block
		{"::ffff:10.0.0.1", true},  // mapped form, normalised
		{"::ffff:10.1.9.9", false}, // mapped form, blocked
		{"172.16.5.5", false},      // blocked via mapped prefix
		{"8.8.8.8", true},          // 0.0.0.0/0 allowed
		{"2001:db8::1", true},      // v6 allow
		{"2001:db8:bad::1", false}, // v6 block within allow
		{"2001:db9::1", false},     // v6, no match: blocked by default
		{"::1", false},             // 0.0.0.0/0 does not cover IPv6
		{"255.255.255.255", true},  // end of space
		{"0.0.0.0", true},          // start of space
		{"fe80::1%eth0", false},    // zoned address: no v6 match
		{"", false},                // unknown: default
	}
	for _, tt := range tests {
		var a netip.Addr
		if tt.addr != "" {
			a = netip.MustParseAddr(tt.addr)
		}
		if got := f.Allowed(a); got != tt.want {
			t.Errorf("Allowed(%s) = %v, want %v", tt.addr, got, tt.want)
		}
	}
	open, err := NewFilter(nil, []string{"10.0.0.0/8"}, false)
	if err != nil {
		t.Fatal(err)
	}
	if !open.Allowed(netip.Addr{}) || open.Allowed(netip.MustParseAddr("10.9.9.9")) || !open.Allowed(netip.MustParseAddr("11.0.0.0")) {
		t.Error("allow-by-default filter decides wrongly")
	}
}

func TestFilterErrors(t *testing.T) {
	_, err := NewFilter([]string{"10.0.0.0/8"}, []string{"1.1.1.1", "10.0.0.0/8"}, false)
	var le *ListError
	if !errors.As(err, &le) || le.List != "blockIPs" || le.Index != 1 || !errors.Is(err, ErrConflict) {
		t.Errorf("same prefix in both lists: %v", err)
	}
	_, err = NewFilter([]string{"1.1.1.1", "nope"}, nil, false)
	if !errors.As(err, &le) || le.List != "allowIPs" || le.Index != 1 || !errors.Is(err, ErrInvalidPrefix) {
		t.Errorf("bad entry: %v", err)
	}
	if _, err := NewFilter([]string{"10.0.0.0/8", "10.1.1.1/8"}, nil, false); err != nil {
		t.Errorf("the same prefix twice in one list: %v", err)
	}
}

// naive is the reference: the longest prefix that contains a.
func naive(entries []Prefix, a netip.Addr) (uint8, bool) {
	a = a.Unmap()
	best := -1
	var label uint8
	for _, e := range entries {
		p := e.Prefix
		if p.Addr().Is4In6() && p.Bits() >= 96 {
			p = netip.PrefixFrom(p.Addr().Unmap(), p.Bits()-96)
		}
		if p.Contains(a) && p.Bits() > best {
			best, label = p.Bits(), e.Label
		}
	}
	return label, best >= 0
}

func randAddr(r *rand.Rand, v4 bool) netip.Addr {
	if v4 {
		// A narrow space so that prefixes nest often.
		return netip.AddrFrom4([4]byte{10, byte(r.IntN(4)), byte(r.IntN(256)), byte(r.IntN(256))})
	}
	var b [16]byte
	b[0], b[1], b[2] = 0x20, 0x01, byte(r.IntN(2))
	for i := 3; i < 16; i++ {
		b[i] = byte(r.IntN(256))
	}
	return netip.AddrFrom16(b)
}

func TestTableAgainstNaive(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for round := range 200 {
		var entries []Prefix
		seen := map[netip.Prefix]bool{}
		for range 1 + r.IntN(40) {
			v4 := r.IntN(2) == 0
			a := randAddr(r, v4)
			var bits int
			if v4 {
				bits = 8 + r.IntN(25)
			} else {
				bits = 8 + r.IntN(121)
			}
			p := netip.PrefixFrom(a, bits).Masked()
			if seen[p] {
				continue
			}
			seen[p] = true
			entries = append(entries, Prefix{p, uint8(r.IntN(3))})
		}
		if round%10 == 0 {
			entries = append(entries, Prefix{netip.MustParsePrefix("0.0.0.0/0"), 7}, Prefix{netip.MustParsePrefix("::/0"), 8})
		}
		tab, err := NewTable(entries)
		if err != nil {
			t.Fatal(err)
		}
		for range 2000 {
			var a netip.Addr
			switch r.IntN(3) {
			case 0:
				a = randAddr(r, true)
			case 1:
				a = randAddr(r, false)
			default: // an edge of some prefix
				e := entries[r.IntN(len(entries))]
				first, last := bounds(e.Prefix)
				k := first
				if r.IntN(2) == 0 {
					k = last
				}
				switch r.IntN(3) {
				case 0:
					k = k.next()
				case 1:
					k = k.prev()
				}
				bitLen := 128
				if e.Prefix.Addr().Is4() {
					bitLen = 32
					if k.hi != 0 || k.lo > 1<<32-1 {
						continue
					}
				}
				a = netip.MustParseAddr(addrString(k, bitLen))
			}
			gl, gok := tab.Lookup(a)
			wl, wok := naive(entries, a)
			if gl != wl || gok != wok {
				t.Fatalf("round %d: Lookup(%s) = %d,%v; want %d,%v; entries %v", round, a, gl, gok, wl, wok, entries)
			}
		}
	}
}

func TestLookupDoesNotAllocate(t *testing.T) {
	f, err := NewFilter([]string{"10.0.0.0/8", "2001:db8::/32"}, []string{"10.1.0.0/16"}, true)
	if err != nil {
		t.Fatal(err)
	}
	a4, a6 := netip.MustParseAddr("10.1.2.3"), netip.MustParseAddr("2001:db8::5")
	if n := testing.AllocsPerRun(100, func() { f.Allowed(a4); f.Allowed(a6) }); n != 0 {
		t.Errorf("Allowed allocates %v times", n)
	}
}

func BenchmarkAllowed(b *testing.B) {
	for _, n := range []int{10, 10000} {
		r := rand.New(rand.NewPCG(3, 4))
		var allow, block []string
		for i := range n {
			p := netip.PrefixFrom(netip.AddrFrom4([4]byte{byte(r.IntN(256)), byte(r.IntN(256)), byte(r.IntN(256)), 0}), 24).Masked().String()
			if i%2 == 0 {
				allow = append(allow, p)
			} else {
				block = append(block, p)
			}
		}
		f, err := NewFilter(allow, block, true)
		if err != nil {
			b.Fatal(err)
		}
		addrs := make([]netip.Addr, 1024)
		for i := range addrs {
			addrs[i] = randAddr(r, i%2 == 0)
		}
		b.Run(map[int]string{10: "10prefixes", 10000: "10000prefixes"}[n], func(b *testing.B) {
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				f.Allowed(addrs[i&1023])
				i++
			}
		})
	}
}
