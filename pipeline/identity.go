package pipeline

import (
	"context"
	"net/http"
	"net/netip"
)

// RequestInfo is what a gate learned about a request before routing it:
// the real client address (from trusted proxies' headers), the request ID
// and whether its route lets it switch protocols. It travels in the
// request's context; filters read it with ClientIP and RequestID, or with
// RequestInfoOf.
type RequestInfo struct {
	ClientIP  netip.Addr
	RequestID string
	// UpgradeAllowed is true when the route the gate matched allows an
	// HTTP/1.1 Upgrade (WebSocket and others; gate's allowUpgrade): a
	// proxy then passes the request's Connection: Upgrade and Upgrade
	// headers on and hands a 101 answer back. The gate sets it once the
	// route is matched, before the pipeline runs; on a route that does
	// not allow it the gate has already removed the offer to upgrade.
	// False for a request that did not come through a gate.
	UpgradeAllowed bool
	// PathParams are the parameters the route's path pattern captured
	// (gate's routerKind RadixTree: /users/{id}, and "*" for a trailing
	// catch-all), in the pattern's order. The gate sets them with
	// UpgradeAllowed; nil when the route has none. Read them with
	// PathParam.
	PathParams []Param
	// Explain, when set, asks the pipeline and its filters to account for
	// what they do with the request (see Explain). The gate sets it before
	// routing, only for a trusted client that asked; nil otherwise.
	Explain *Explain
}

// Param is one path parameter: its name in the route's pattern and the
// path segment (or, for the catch-all "*", the rest of the path) it
// matched, as decoded in the request's URL.Path.
type Param struct {
	Name, Value string
}

// PathParam returns the value of r's path parameter name (see
// RequestInfo.PathParams), or "" when its route captured none by that
// name.
func PathParam(r *http.Request, name string) string {
	if info := RequestInfoOf(r); info != nil {
		for _, p := range info.PathParams {
			if p.Name == name {
				return p.Value
			}
		}
	}
	return ""
}

type requestInfoKey struct{}

// WithRequestInfo returns r carrying info in its context. Gates call it
// once per request, before routing.
func WithRequestInfo(r *http.Request, info *RequestInfo) *http.Request {
	return r.WithContext(context.WithValue(r.Context(), requestInfoKey{}, info))
}

// RequestInfoOf returns the RequestInfo a gate attached to r, or nil.
func RequestInfoOf(r *http.Request) *RequestInfo {
	info, _ := r.Context().Value(requestInfoKey{}).(*RequestInfo)
	return info
}

// ClientIP returns the address of the client that sent r: the one its gate
// worked out from trusted proxies' headers, or, for a request that did not
// come through a gate, the address of r.RemoteAddr; the zero Addr when
// neither is known. IPv4-mapped IPv6 addresses are returned as IPv4.
func ClientIP(r *http.Request) netip.Addr {
	if info := RequestInfoOf(r); info != nil {
		return info.ClientIP
	}
	return PeerAddr(r.RemoteAddr)
}

// RequestID returns the ID r's gate gave it, or "".
func RequestID(r *http.Request) string {
	if info := RequestInfoOf(r); info != nil {
		return info.RequestID
	}
	return ""
}

// PeerAddr parses a RemoteAddr (host:port, or a bare address).
func PeerAddr(remote string) netip.Addr {
	if ap, err := netip.ParseAddrPort(remote); err == nil {
		return ap.Addr().Unmap()
	}
	if a, err := netip.ParseAddr(remote); err == nil {
		return a.Unmap()
	}
	return netip.Addr{}
}
