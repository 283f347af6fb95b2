package gate

import (
	"fmt"
	"net/http"
	"net/netip"

	"github.com/sluicegw/sluice/pipeline"
)

// DefaultExplainHeader is the request header that asks for an explanation,
// and the response header that carries it, when Explain.Header is empty.
const DefaultExplainHeader = "X-Sluice-Explain"

// Explain lets trusted clients ask why a request went where it went:
//
//	explain: {enabled: true, header: X-Sluice-Explain}
//
// A request that carries the header (any value) and comes from a trusted
// address gets back the same header listing the route matched and its
// backend pipeline, each filter step run with its result and duration, and
// each upstream attempt (pool, server, status, time to the response
// headers); the server also logs it at Info ("explain") when the request is
// done. The request header is removed before routing, so that the backend
// never sees it.
//
// A trusted address is a loopback address or one of trustedProxies. Both
// the direct peer and the client address worked out from a trusted proxy's
// forwarding headers must be trusted: a trusted proxy forwarding an
// outside client's request does not get it explained. For any other client
// the header is ignored (and passed on like any header) and nothing is
// revealed. Off by default.
type Explain struct {
	// Enabled turns explaining on. Default false.
	Enabled bool `yaml:"enabled"`
	// Header names the request header that asks and the response header
	// that answers. Empty means DefaultExplainHeader.
	Header string `yaml:"header,omitempty"`
}

func (e *Explain) validate() error {
	if e == nil || e.Header == "" || isToken(e.Header) {
		return nil
	}
	return pipeline.FieldErr("explain.header", fmt.Errorf("%q is not a header name", e.Header))
}

// header returns the canonical header name e uses, or "" when e is off.
func (e *Explain) header() string {
	if e == nil || !e.Enabled {
		return ""
	}
	if e.Header == "" {
		return DefaultExplainHeader
	}
	return http.CanonicalHeaderKey(e.Header)
}

// explains reports whether the request from peer, whose client address is
// client, may be explained: both are loopback or trusted proxies.
func (o *observer) explains(id *identity, peer, client netip.Addr) bool {
	ok := func(a netip.Addr) bool { return a.IsValid() && (a.Unmap().IsLoopback() || id.trusts(a.Unmap())) }
	return ok(peer) && ok(client)
}
