// Package ipset matches IP addresses against sets of CIDR prefixes: the
// allow and block lists of the IPFilter filter and of a gate's ipFilter.
//
// # Model
//
// A Table maps prefixes (IPv4 or IPv6; a plain address is a /32 or /128)
// to a small label. Build flattens the prefixes, which are always either
// nested or disjoint, into sorted, disjoint address ranges, each carrying
// the label of the most specific (longest) prefix that covers it. Lookup is
// then a binary search over those ranges: O(log n), no allocation, no lock,
// safe for concurrent use. A built Table never changes.
//
// IPv4 and IPv6 are kept apart: an IPv4 address (or an IPv4-mapped IPv6
// address such as ::ffff:10.0.0.1, which is normalised to IPv4, both in
// prefixes and in lookups) matches IPv4 prefixes only, so "::/0" means
// every IPv6 address and "0.0.0.0/0" every IPv4 address.
//
// Filter is the allow/block decision built on a Table: the most specific
// matching prefix decides, and an address no prefix covers gets the
// default.
package ipset

import (
	"cmp"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"strings"
)

// Errors of the package.
var (
	// ErrInvalidPrefix: an entry is neither an IP address nor a CIDR prefix.
	ErrInvalidPrefix = errors.New("not an IP address or CIDR prefix")
	// ErrConflict: the same prefix was added twice with different labels.
	ErrConflict = errors.New("prefix listed with two different labels")
)

// ParsePrefix parses a CIDR prefix ("10.0.0.0/8", "2001:db8::/32") or a
// plain address ("10.1.2.3", "::1", a /32 or /128). Host bits are masked
// off, zones are refused, and IPv4-mapped IPv6 prefixes of at least /96 are
// returned as IPv4.
func ParsePrefix(s string) (netip.Prefix, error) {
	s = strings.TrimSpace(s)
	var p netip.Prefix
	if strings.Contains(s, "/") {
		var err error
		if p, err = netip.ParsePrefix(s); err != nil {
			return netip.Prefix{}, fmt.Errorf("%q: %w", s, ErrInvalidPrefix)
		}
	} else {
		a, err := netip.ParseAddr(s)
		if err != nil || a.Zone() != "" {
			return netip.Prefix{}, fmt.Errorf("%q: %w", s, ErrInvalidPrefix)
		}
		p = netip.PrefixFrom(a, a.BitLen())
	}
	if a := p.Addr(); a.Is4In6() && p.Bits() >= 96 {
		p = netip.PrefixFrom(a.Unmap(), p.Bits()-96)
	}
	return p.Masked(), nil
}

// u128 is an address as a 128-bit number (IPv4 in its low 32 bits).
type u128 struct{ hi, lo uint64 }

func (a u128) cmp(b u128) int {
	if c := cmp.Compare(a.hi, b.hi); c != 0 {
		return c
	}
	return cmp.Compare(a.lo, b.lo)
}

func (a u128) next() u128 {
	if a.lo == ^uint64(0) {
		return u128{a.hi + 1, 0}
	}
	return u128{a.hi, a.lo + 1}
}

func (a u128) prev() u128 {
	if a.lo == 0 {
		return u128{a.hi - 1, ^uint64(0)}
	}
	return u128{a.hi, a.lo - 1}
}

func key(a netip.Addr) u128 {
	if a.Is4() {
		b := a.As4()
		return u128{0, uint64(b[0])<<24 | uint64(b[1])<<16 | uint64(b[2])<<8 | uint64(b[3])}
	}
	b := a.As16()
	var hi, lo uint64
	for i := range 8 {
		hi = hi<<8 | uint64(b[i])
		lo = lo<<8 | uint64(b[8+i])
	}
	return u128{hi, lo}
}

// bounds returns the first and last address of a masked prefix.
func bounds(p netip.Prefix) (first, last u128) {
	first = key(p.Addr())
	host := p.Addr().BitLen() - p.Bits() // host bits
	last = first
	switch {
	case host >= 64:
		last.lo = ^uint64(0)
		last.hi |= (uint64(1)<<(host-64) - 1) | boolMask(host == 128)
	case host > 0:
		last.lo |= uint64(1)<<host - 1
	}
	return first, last
}

func boolMask(b bool) uint64 {
	if b {
		return ^uint64(0)
	}
	return 0
}

type entry struct {
	first, last u128
	bits        int
	label       uint8
}

type span struct {
	first, last u128
	label       uint8
}

// Table maps prefixes to labels; see the package comment. The zero Table
// is empty. Build one with NewTable.
type Table struct {
	v4, v6 []span
}

// Prefix is one prefix of a Table with its label.
type Prefix struct {
	Prefix netip.Prefix
	Label  uint8
}

// NewTable builds a Table from entries. The same prefix twice with one
// label is fine; with two labels it is ErrConflict.
func NewTable(entries []Prefix) (*Table, error) {
	var v4, v6 []entry
	for _, e := range entries {
		p := e.Prefix.Masked()
		if !p.IsValid() {
			return nil, fmt.Errorf("%v: %w", e.Prefix, ErrInvalidPrefix)
		}
		if a := p.Addr(); a.Is4In6() && p.Bits() >= 96 {
			p = netip.PrefixFrom(a.Unmap(), p.Bits()-96)
		}
		first, last := bounds(p)
		en := entry{first: first, last: last, bits: p.Bits(), label: e.Label}
		if p.Addr().Is4() {
			v4 = append(v4, en)
		} else {
			v6 = append(v6, en)
		}
	}
	var t Table
	var err error
	if t.v4, err = flatten(v4, 32); err != nil {
		return nil, err
	}
	if t.v6, err = flatten(v6, 128); err != nil {
		return nil, err
	}
	return &t, nil
}

// flatten turns nested-or-disjoint prefixes into disjoint spans labelled
// by their most specific prefix.
func flatten(es []entry, bitLen int) ([]span, error) {
	if len(es) == 0 {
		return nil, nil
	}
	slices.SortFunc(es, func(a, b entry) int {
		if c := a.first.cmp(b.first); c != 0 {
			return c
		}
		return cmp.Compare(a.bits, b.bits)
	})
	// Drop duplicates, refusing conflicting ones.
	uniq := es[:1]
	for _, e := range es[1:] {
		if last := &uniq[len(uniq)-1]; last.first == e.first && last.bits == e.bits {
			if last.label != e.label {
				return nil, fmt.Errorf("%s/%d: %w", addrString(e.first, bitLen), e.bits, ErrConflict)
			}
			continue
		}
		uniq = append(uniq, e)
	}
	var out []span
	emit := func(first, last u128, label uint8) {
		if n := len(out); n > 0 && out[n-1].label == label && out[n-1].last.next() == first {
			out[n-1].last = last
			return
		}
		out = append(out, span{first, last, label})
	}
	var stack []entry
	var cur u128  // first address not yet emitted
	done := false // cur has run past the end of the address space
	pop := func() {
		top := stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		if !done && cur.cmp(top.last) <= 0 {
			emit(cur, top.last, top.label)
		}
		if top.last == maxAddr(bitLen) {
			done = true
		} else if !done && cur.cmp(top.last) <= 0 {
			cur = top.last.next()
		}
	}
	for _, e := range uniq {
		for len(stack) > 0 && stack[len(stack)-1].last.cmp(e.first) < 0 {
			pop()
		}
		if len(stack) > 0 && cur.cmp(e.first) < 0 {
			emit(cur, e.first.prev(), stack[len(stack)-1].label)
		}
		cur = e.first
		stack = append(stack, e)
	}
	for len(stack) > 0 {
		pop()
	}
	return out, nil
}

func maxAddr(bitLen int) u128 {
	if bitLen == 32 {
		return u128{0, 1<<32 - 1}
	}
	return u128{^uint64(0), ^uint64(0)}
}

func addrString(k u128, bitLen int) string {
	if bitLen == 32 {
		return netip.AddrFrom4([4]byte{byte(k.lo >> 24), byte(k.lo >> 16), byte(k.lo >> 8), byte(k.lo)}).String()
	}
	var b [16]byte
	for i := range 8 {
		b[i] = byte(k.hi >> (56 - 8*i))
		b[8+i] = byte(k.lo >> (56 - 8*i))
	}
	return netip.AddrFrom16(b).String()
}

// Lookup returns the label of the most specific prefix that contains a,
// and whether there is one. IPv4-mapped IPv6 addresses are looked up as
// IPv4; the zero Addr matches nothing. It does not allocate.
func (t *Table) Lookup(a netip.Addr) (label uint8, ok bool) {
	if t == nil || !a.IsValid() {
		return 0, false
	}
	a = a.Unmap()
	spans := t.v6
	if a.Is4() {
		spans = t.v4
	}
	k := key(a)
	// The first span that ends at or after k.
	lo, hi := 0, len(spans)
	for lo < hi {
		m := int(uint(lo+hi) >> 1)
		if spans[m].last.cmp(k) < 0 {
			lo = m + 1
		} else {
			hi = m
		}
	}
	if lo < len(spans) && spans[lo].first.cmp(k) <= 0 {
		return spans[lo].label, true
	}
	return 0, false
}

// Len returns the number of disjoint ranges the Table searches.
func (t *Table) Len() int {
	if t == nil {
		return 0
	}
	return len(t.v4) + len(t.v6)
}

// Labels of a Filter's table.
const (
	labelAllow uint8 = 1
	labelBlock uint8 = 2
)

// Filter decides whether an address may pass: the most specific prefix of
// its allow and block lists that contains the address decides, and an
// address that neither list covers passes unless BlockByDefault. The same
// prefix in both lists is an error. Its methods do not allocate and are
// safe for concurrent use.
type Filter struct {
	table          *Table
	blockByDefault bool
}

// ListError is an error in one entry of a Filter's lists: which list
// ("allowIPs" or "blockIPs") and its index.
type ListError struct {
	List  string
	Index int
	Err   error
}

func (e *ListError) Error() string {
	return e.List + "[" + strconv.Itoa(e.Index) + "]: " + e.Err.Error()
}

func (e *ListError) Unwrap() error { return e.Err }

// NewFilter builds a Filter from lists of addresses and CIDR prefixes
// (see ParsePrefix). Errors are *ListError values.
func NewFilter(allow, block []string, blockByDefault bool) (*Filter, error) {
	entries := make([]Prefix, 0, len(allow)+len(block))
	index := map[netip.Prefix]int{}
	for i, s := range allow {
		p, err := ParsePrefix(s)
		if err != nil {
			return nil, &ListError{"allowIPs", i, err}
		}
		index[p] = i
		entries = append(entries, Prefix{p, labelAllow})
	}
	for i, s := range block {
		p, err := ParsePrefix(s)
		if err != nil {
			return nil, &ListError{"blockIPs", i, err}
		}
		if j, ok := index[p]; ok {
			return nil, &ListError{"blockIPs", i, fmt.Errorf("%s is also allowIPs[%d]: %w", p, j, ErrConflict)}
		}
		entries = append(entries, Prefix{p, labelBlock})
	}
	t, err := NewTable(entries)
	if err != nil {
		return nil, err
	}
	return &Filter{table: t, blockByDefault: blockByDefault}, nil
}

// Allowed reports whether a may pass. The zero Addr (an unknown client)
// gets the default.
func (f *Filter) Allowed(a netip.Addr) bool {
	switch l, ok := f.table.Lookup(a); {
	case !ok:
		return !f.blockByDefault
	default:
		return l == labelAllow
	}
}
