// Package gate holds Sluice's traffic gates: the entry points that accept
// client connections and route each request to a pipeline.
//
// The HTTPServer gate listens on a TCP address, matches each request against
// its rules (host, then path and method, in order) and hands it to the
// backend pipeline the matching path names. No matching path is 404; a path
// that matches but not for the request's method is 405; a backend pipeline
// that does not exist (yet) is 503.
//
// A Server value is one generation of a configuration. An update builds a
// new Server, which inherits the old one's listener when the address did not
// change, so no connection is refused or dropped by a reload; the old one is
// closed afterwards and, having handed its listener over, closes nothing.
// When the address changes, the new listener is bound before the swap and
// the old one drains its requests.
//
// Still to come in this package: TLS and HTTP/2, h2c, HTTP/3, the radix-tree
// router, per-path limits, trusted proxies and the access log.
package gate
