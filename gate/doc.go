// Package gate holds Sluice's traffic gates: the entry points that accept
// client connections and route each request to a pipeline.
//
// The HTTPServer gate listens on a TCP address, matches each request against
// its rules (host, then path, method, headers and query; see Routing) and
// hands it to the backend pipeline the matching path names. No matching
// path is 404; a path that matches in all but the request's method is 405
// with an Allow header; a backend pipeline that does not exist (yet) is
// 503.
//
// # Routing
//
// The rules are compiled once per generation (regexps, and a radix tree
// of each rule's exact paths, patterns and prefixes) and only read by
// requests; a lookup of a static or parameter route allocates nothing,
// and its cost follows the path's length rather than the number of
// routes, in both router kinds (Ordered merges the tree's candidates by
// declaration order). Only pathRegexp paths are tried one by one. A request is routed by its host
// (port removed, case-insensitive) and its normalised path:
//
//  1. Rules are tried in order. A rule applies when its host, hostRegexp
//     or one of its hosts matches (any of them; none set matches every
//     host). Hosts are exact, wildcard ("*.example.com" by suffix,
//     "www.example.*" by prefix) or regexps.
//  2. Within a rule a path is a candidate when its path condition
//     matches, and it wins when its headers and queries match too
//     (one of them, or all with matchAllHeader / matchAllQuery; a
//     condition reads the first value, "" when absent) and its methods
//     allow the request's (HEAD wherever GET). A candidate that fails
//     passes the request to the next candidate; a rule with no winner
//     passes it to the next rule.
//  3. The order of the candidates depends on routerKind. Ordered (the
//     default, Easegress's): the paths in their order, path exact,
//     pathPrefix by bytes, pathRegexp unanchored. RadixTree: path may be
//     a pattern ("/users/{id}", "/files/{n:[0-9]+}", "/static/*"), and
//     the candidates come most specific first, whatever their order: the
//     exact path; then patterns, walking the tree with, at each position,
//     a static edge before a regexp parameter (in declared order) before
//     a plain parameter before a catch-all; then pathPrefix, longest
//     first; then pathRegexp in declared order; then paths with no path
//     condition in declared order. Paths that tie keep their declared
//     order.
//  4. No winner anywhere: 405 when some path matched in all but the
//     method (Allow lists the methods of every such path), else 404.
//
// Once routed, a path's rewriteTarget replaces the request's path (and a
// pattern's parameters reach filters through pipeline.PathParam), so the
// pipeline and the backend see the rewritten path; it is normalised like
// a request path.
//
// # Protocols and TLS
//
// A cleartext listener serves HTTP/1.1 and, with h2c, HTTP/2 with prior
// knowledge (a connection that opens with the HTTP/2 preface; without h2c
// the preface is answered 505). With https, the listener serves TLS 1.2
// (minTLSVersion "1.3": 1.3) and up with Go's default cipher suites and no
// renegotiation, offering "h2" and "http/1.1" by ALPN (only "http/1.1"
// with http2: false). The certificate is chosen by SNI among those of
// certs/keys, certBase64/keyBase64 and certFiles, by the DNS names of each
// (wildcards cover one label); no match gets the first. Client
// certificates are asked for per clientAuth (none, request, require,
// verify; verify, the default when a client CA is set, checks them against
// caCertBase64 and clientCAFiles).
//
// With http3 (https only) the server also serves HTTP/3 over QUIC on the
// UDP port of the same number, with the same handler, certificates and
// client authentication (TLS 1.3, as QUIC requires; no 0-RTT), and every
// HTTP/1.1 and HTTP/2 response advertises it with Alt-Svc. One HTTP/2 or
// HTTP/3 connection has at most maxConcurrentStreams requests open (default
// 250). Shutdown drains HTTP/3 connections too (GOAWAY, then close).
//
// The HTTP/1.1 Upgrade to h2c (RFC 7540 §3.2) is taken only for a request
// whose route allows it (allowH2CUpgrade on the rule or path), on a
// cleartext listener with keepAlive, and only for a body-less request: the
// server answers 101 and serves the request as stream 1 of an HTTP/2
// connection. Everywhere else the offer (Upgrade: h2c, HTTP2-Settings and
// their Connection tokens) is removed from the request, which is served
// as HTTP/1.1, so a backend never sees it. Upgraded connections are
// hijacked from net/http; Shutdown drains them too (GOAWAY, then close).
//
// Any other HTTP/1.1 Upgrade (WebSocket and the like) passes only on routes
// that allow it (allowUpgrade on the rule or path): the server records the
// decision in the request's pipeline.RequestInfo (UpgradeAllowed), a Proxy
// then passes the offer on, and the pipeline joins the client's connection
// to the server's when the server answers 101. On other routes the Upgrade
// header and the upgrade token of Connection are removed, and the request
// is served as a normal one. Connections upgraded this way are not
// tracked by Shutdown: they last until the client or the server closes
// them.
//
// # Request smuggling
//
// On a cleartext listener a guard reads each connection's bytes beside
// net/http and follows the framing of its HTTP/1.1 requests. A request
// whose framing two parsers could read differently — Content-Length
// beside Transfer-Encoding, a bare LF or a bare CR as a line end, a header
// folded onto the next line, chunk data longer than its size — is answered
// 400 and its connection closed before any pipeline sees it; net/http
// itself refuses duplicate or malformed Content-Length, unknown transfer
// codings (501), invalid header names and values, and oversized heads
// (431). On an h2c listener a first line that is neither HTTP/1 nor the
// HTTP/2 preface closes the connection without an answer. Connections
// that switch protocols (101, CONNECT tunnels, h2c) leave the guard when
// they are hijacked. TLS listeners are not guarded yet: net/http's own
// checks apply there.
//
// # A request's way through the server
//
//  1. net/http reads the request within the listener's limits: headers
//     within readHeaderTimeout (default 10s) and maxHeaderBytes (default
//     1 MiB; larger is 431, answered by net/http itself), the whole request
//     within readTimeout, the response within writeTimeout; an idle
//     keep-alive connection closes after keepAliveTimeout (default 60s). At
//     most maxConnections connections are open at once; further ones wait
//     in the kernel's backlog until one closes.
//  2. Client identity: the client address is the direct peer's, unless the
//     peer is one of trustedProxies, in which case it is the rightmost
//     untrusted address of X-Forwarded-For, else X-Real-IP, else Forwarded
//     (RFC 7239 for=). A request ID from a trusted peer is kept when well
//     formed, otherwise a random one replaces it in the request header
//     (requestIDHeader, default X-Request-Id). Filters read both with
//     ClientIP and RequestID. The server's ipFilter (see IPFilter) then
//     judges the client address: a refused client gets 403 before routing.
//  3. The path is normalised (dot segments resolved, repeated slashes
//     folded; an encoded slash or a backslash is 400), then the rules
//     route it (see Routing) and rewriteTarget rewrites it. The matched
//     rule's ipFilter refuses a client with 403 here. A route without
//     allowUpgrade loses the request's Upgrade offer here.
//  4. Body limit: the matched path's clientMaxBodySize, or the server's
//     (0 and -1: no limit). A Content-Length over it is 413 before the
//     pipeline runs; otherwise the body is wrapped in http.MaxBytesReader,
//     so a body that grows over it while streaming fails the pipeline's
//     read with an *http.MaxBytesError, which the Proxy filter answers
//     413.
//  5. The backend pipeline serves the request.
//  6. With accessLog enabled, a sampled request gets one structured line
//     ("access": method, host, path, proto, status, request and response
//     bytes, duration, client IP, route, backend, request ID) on
//     Options.AccessLogger. With it disabled the response writer is not
//     wrapped at all.
//
// # Generations and listeners
//
// A Server value is one generation of a configuration. An update builds a
// new Server, which inherits the old one's listener when the address did not
// change, so no connection is refused or dropped by a reload; the old one is
// closed afterwards and, having handed its listener over, closes nothing.
// When the address changes, the new listener is bound before the swap and
// the old one drains its requests.
//
// Listener-level settings (the timeouts, maxHeaderBytes, maxConnections,
// maxConcurrentStreams, https, h2c and http3) are fixed when a listener is created: they live in the
// running http.Server, which cannot change under its connections without a
// race, and recreating the listener would rebind a port that is in use. A
// generation that changes them on the same address keeps the running
// values, and its Status reports pendingRestart: true until the listener is
// recreated (a change of address, or a restart). Everything else (rules,
// keepAlive, clientMaxBodySize, trustedProxies, requestIDHeader,
// accessLog, and the TLS certificates, client CAs, clientAuth,
// minTLSVersion and http2) takes effect with the generation.
//
// # Certificate reload
//
// A TLS listener hands each new handshake the TLS configuration of the
// newest generation through an atomic pointer (tls.Config
// GetConfigForClient), so new certificates or client CAs on the same
// address apply to the next handshake with no new listener, while the
// connections already open keep theirs and carry on. Certificate files
// are read when a generation is built: apply the spec again to reload
// them.
//
// # Hot upgrade
//
// Options.Listen and Options.ListenPacket, when set, create the listening
// TCP and UDP (HTTP/3) sockets in place of net.Listen and
// net.ListenPacket. A program that replaces itself passes a socket-passing
// library's functions there (the reference binary uses
// github.com/cloudflare/tableflip), so that the new process serves on the
// sockets the old one was listening on while the old one drains.
package gate
