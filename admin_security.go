package sluice

import (
	"crypto/tls"
	"fmt"
	"net"
	"net/http"
	"strings"
)

// ListenAdmin opens the listener of the admin API on addr (host:port), to
// serve AdminHandler with an http.Server. With WithAdminTLS it is a TLS
// listener. It refuses (ErrAdminUnprotected) an address that is not a
// loopback one (an empty host means every interface) unless requests are
// authenticated: a token (WithAdminToken) or mutual TLS (WithAdminTLS
// with tls.RequireAndVerifyClientCert).
func (g *Gateway) ListenAdmin(addr string) (net.Listener, error) {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, fmt.Errorf("admin API address %q: %w", addr, err)
	}
	if !loopbackHost(host) && g.s.adminToken == "" && !g.adminMTLS() {
		return nil, fmt.Errorf("%w: %q", ErrAdminUnprotected, addr)
	}
	listen := net.Listen
	if g.s.listen != nil {
		listen = g.s.listen
	}
	ln, err := listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("admin API: %w", err)
	}
	if g.s.adminTLS != nil {
		ln = tls.NewListener(ln, g.s.adminTLS)
	}
	return ln, nil
}

// adminMTLS reports whether the admin listener verifies client
// certificates.
func (g *Gateway) adminMTLS() bool {
	return g.s.adminTLS != nil && g.s.adminTLS.ClientAuth == tls.RequireAndVerifyClientCert
}

// adminClientVerified reports whether r came over the admin TLS listener
// with a client certificate that was verified.
func (g *Gateway) adminClientVerified(r *http.Request) bool {
	return g.s.adminTLS != nil && r.TLS != nil && len(r.TLS.VerifiedChains) > 0
}

// adminGuard refuses requests whose Host is not allowed (DNS rebinding)
// and state-changing requests from another origin (CSRF), before auth.
func (g *Gateway) adminGuard(next http.Handler) http.Handler {
	allowed := map[string]bool{}
	for _, h := range g.s.adminHosts {
		allowed[normalizeHost(h)] = true
	}
	cop := http.NewCrossOriginProtection()
	cop.SetDenyHandler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		writeError(w, r, http.StatusForbidden, "cross-origin request refused")
	}))
	guarded := cop.Handler(next)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := normalizeHost(r.Host)
		if h != "" && !loopbackHost(h) && !allowed[h] {
			writeError(w, r, http.StatusForbidden, fmt.Sprintf("host %q is not allowed to reach the admin API (see WithAdminHosts)", r.Host))
			return
		}
		guarded.ServeHTTP(w, r)
	})
}

// normalizeHost returns the host of a Host header or host name, without
// port, brackets or trailing dot, lower-cased.
func normalizeHost(h string) string {
	if host, _, err := net.SplitHostPort(h); err == nil {
		h = host
	}
	return strings.TrimSuffix(strings.ToLower(strings.Trim(h, "[]")), ".")
}

// loopbackHost reports whether host (no port) is localhost, a name under
// .localhost (RFC 6761), or a loopback IP address.
func loopbackHost(host string) bool {
	host = normalizeHost(host)
	if host == "localhost" || strings.HasSuffix(host, ".localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}
