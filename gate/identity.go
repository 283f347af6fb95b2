package gate

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net/http"
	"net/netip"
	"strings"

	"github.com/sluicegw/sluice/pipeline"
)

// DefaultRequestIDHeader is the header that carries the request ID when
// Spec.RequestIDHeader is empty.
const DefaultRequestIDHeader = "X-Request-Id"

// ClientIP returns the address of the client that sent r; see
// pipeline.ClientIP, which filters use.
func ClientIP(r *http.Request) netip.Addr { return pipeline.ClientIP(r) }

// RequestID returns the ID the server gave r; see pipeline.RequestID.
func RequestID(r *http.Request) string { return pipeline.RequestID(r) }

// parsePrefix parses a CIDR or a bare address (a /32 or /128).
func parsePrefix(s string) (netip.Prefix, error) {
	if strings.Contains(s, "/") {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			return netip.Prefix{}, err
		}
		if p.Addr().Is4In6() {
			p = netip.PrefixFrom(p.Addr().Unmap(), p.Bits()-96)
		}
		return p.Masked(), nil
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Prefix{}, fmt.Errorf("%q is neither a CIDR nor an IP address", s)
	}
	if a.Zone() != "" {
		return netip.Prefix{}, fmt.Errorf("%q: a zone is not allowed", s)
	}
	a = a.Unmap()
	return netip.PrefixFrom(a, a.BitLen()), nil
}

// hostAddr parses an address as proxies write it into X-Forwarded-For,
// X-Real-IP and Forwarded: bare, host:port, [v6] or [v6]:port, perhaps
// quoted.
func hostAddr(s string) (netip.Addr, bool) {
	s = strings.TrimSpace(s)
	if len(s) >= 2 && s[0] == '"' && s[len(s)-1] == '"' {
		s = s[1 : len(s)-1]
	}
	if strings.HasPrefix(s, "[") {
		i := strings.IndexByte(s, ']')
		if i < 0 || (i+1 < len(s) && s[i+1] != ':') {
			return netip.Addr{}, false
		}
		s = s[1:i]
	} else if strings.Count(s, ":") == 1 {
		s = s[:strings.IndexByte(s, ':')]
	}
	a, err := netip.ParseAddr(s)
	if err != nil || a.Zone() != "" {
		return netip.Addr{}, false
	}
	return a.Unmap(), true
}

// forwardedFor returns the address of a Forwarded element's for= pair.
func forwardedFor(elem string) (netip.Addr, bool) {
	for elem != "" {
		pair := elem
		if i := strings.IndexByte(elem, ';'); i >= 0 {
			pair, elem = elem[:i], elem[i+1:]
		} else {
			elem = ""
		}
		pair = strings.TrimSpace(pair)
		if len(pair) > 4 && strings.EqualFold(pair[:4], "for=") {
			return hostAddr(pair[4:])
		}
	}
	return netip.Addr{}, false
}

// identity works out the client address and the trust in the direct peer.
type identity struct {
	trusted  []netip.Prefix
	idHeader string // canonical
}

func newIdentity(spec *Spec) identity {
	id := identity{idHeader: http.CanonicalHeaderKey(spec.RequestIDHeader)}
	if id.idHeader == "" {
		id.idHeader = DefaultRequestIDHeader
	}
	for _, s := range spec.TrustedProxies {
		p, _ := parsePrefix(s) // validated
		id.trusted = append(id.trusted, p)
	}
	return id
}

func (id *identity) trusts(a netip.Addr) bool {
	if !a.IsValid() {
		return false
	}
	a = a.WithZone("")
	for _, p := range id.trusted {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// clientIP returns the client's address for a request from peer, a trusted
// proxy: the rightmost untrusted address of X-Forwarded-For, else
// X-Real-IP, else the rightmost untrusted for= of Forwarded, else peer.
// When every address of a list is trusted the leftmost one is the client.
func (id *identity) clientIP(h http.Header, peer netip.Addr) netip.Addr {
	if a, ok := id.rightmostUntrusted(h["X-Forwarded-For"], hostAddr); ok {
		return a
	}
	if v := h["X-Real-Ip"]; len(v) > 0 {
		if a, ok := hostAddr(v[0]); ok {
			return a
		}
	}
	if a, ok := id.rightmostUntrusted(h["Forwarded"], forwardedFor); ok {
		return a
	}
	return peer
}

// rightmostUntrusted walks the comma-separated elements of values from the
// right, skipping trusted proxies. An element it cannot parse ends the walk
// at the last address it could.
func (id *identity) rightmostUntrusted(values []string, parse func(string) (netip.Addr, bool)) (netip.Addr, bool) {
	var last netip.Addr
	for i := len(values) - 1; i >= 0; i-- {
		v := values[i]
		for v != "" {
			elem := v
			if j := strings.LastIndexByte(v, ','); j >= 0 {
				elem, v = v[j+1:], v[:j]
			} else {
				v = ""
			}
			if strings.TrimSpace(elem) == "" {
				continue
			}
			a, ok := parse(elem)
			if !ok {
				return last, last.IsValid()
			}
			if !id.trusts(a) {
				return a, true
			}
			last = a
		}
	}
	return last, last.IsValid()
}

// requestID keeps a well-formed ID from a trusted peer, or sets a new one
// on h.
//
// The ID header is end to end: a Connection header naming it, which would
// make a proxy drop it on the way to the backend, loses that token.
func (id *identity) requestID(h http.Header, trusted bool) string {
	if _, ok := h["Connection"]; ok {
		dropConnectionToken(h, id.idHeader)
	}
	if v := h[id.idHeader]; trusted && len(v) == 1 && wellFormedID(v[0]) {
		return v[0]
	}
	s := newRequestID()
	h[id.idHeader] = []string{s}
	return s
}

// dropConnectionToken removes name from the tokens of h's Connection
// header.
func dropConnectionToken(h http.Header, name string) {
	if !hasToken(h["Connection"], name) {
		return
	}
	var keep []string
	for _, v := range h["Connection"] {
		for tok := range strings.SplitSeq(v, ",") {
			if t := strings.TrimSpace(tok); t != "" && !strings.EqualFold(t, name) {
				keep = append(keep, t)
			}
		}
	}
	if len(keep) == 0 {
		h.Del("Connection")
	} else {
		h["Connection"] = []string{strings.Join(keep, ", ")}
	}
}

// wellFormedID accepts 1 to 128 letters, digits and -_.:+/=@.
func wellFormedID(s string) bool {
	if s == "" || len(s) > 128 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || strings.IndexByte("-_.:+/=@", c) >= 0) {
			return false
		}
	}
	return true
}

// newRequestID returns 16 random bytes in hex.
func newRequestID() string {
	var b [16]byte
	rand.Read(b[:]) // never fails (crypto/rand, Go 1.24+)
	var x [32]byte
	hex.Encode(x[:], b[:])
	return string(x[:])
}
