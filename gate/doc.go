// Package gate holds Sluice's traffic gates: the entry points that accept
// client connections and route each request to a pipeline.
//
// The HTTPServer gate listens on a TCP address, matches each request against
// its rules (host, then path and method, in order) and hands it to the
// backend pipeline the matching path names. No matching path is 404; a path
// that matches but not for the request's method is 405; a backend pipeline
// that does not exist (yet) is 503.
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
//     ClientIP and RequestID.
//  3. The path is normalised (dot segments resolved, repeated slashes
//     folded; an encoded slash or a backslash is 400), then the rules
//     route it.
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
// Listener-level settings (the timeouts, maxHeaderBytes and
// maxConnections) are fixed when a listener is created: they live in the
// running http.Server, which cannot change under its connections without a
// race, and recreating the listener would rebind a port that is in use. A
// generation that changes them on the same address keeps the running
// values, and its Status reports pendingRestart: true until the listener is
// recreated (a change of address, or a restart). Everything else (rules,
// keepAlive, clientMaxBodySize, trustedProxies, requestIDHeader,
// accessLog) takes effect with the generation.
//
// Still to come in this package: TLS and HTTP/2, h2c, HTTP/3, the radix-tree
// router.
package gate
