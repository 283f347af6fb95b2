// Package proxy is the Proxy filter: it sends the request to a server chosen
// from a pool and puts the server's response into the Context, where later
// filters may change it before the pipeline writes it to the client.
//
// # The model
//
//	Context.Request ─► Proxy ─► Pool (the main pool) ─► LoadBalancer.Choose ─► Server
//	                                                                           │
//	Context.SetResponse ◄── response, streamed ◄── http.RoundTripper ◄── outbound request
//
// A Proxy has pools of servers. For now a Proxy has exactly one pool, the main
// pool, which takes every request; later versions add pools that take only
// the requests their filter matches, health checks, retries and circuit
// breakers, all inside Pool. The Easegress v1 spelling mainPool is accepted as
// that single pool.
//
// The pool's LoadBalancer picks a Server (roundRobin by default, or random).
// The outbound request follows the rules of httputil.ReverseProxy's Rewrite
// hook, in a small core of this package rather than ReverseProxy itself,
// because the response goes into the Context instead of to the client:
//
//   - the URL's scheme and host are the server's; its path is the server URL's
//     path joined to the request's path with a single slash; the query is kept;
//   - hop-by-hop headers are removed (and those the Connection header names);
//   - X-Forwarded-For gets the client's IP (from RemoteAddr) appended;
//     X-Forwarded-Host and X-Forwarded-Proto are set unless present;
//   - the Host header is the server's, or the client's when the server has
//     keepHost set;
//   - the body is streamed, never buffered.
//
// The response's hop-by-hop headers are removed and its body is left
// streaming; the pipeline writes it with pipeline.WriteResponse.
//
// # Results
//
// Handle returns the empty result when the server answered with a status
// that is not one of the pool's failureCodes, and otherwise one of:
//
//   - internalError: the outbound request could not be built (a previous
//     filter left no request or an invalid one); the response is 500.
//   - clientError: the client went away (its context was cancelled) or its
//     request body could not be read. A body error is answered 400; a
//     cancelled request gets a bare 400 nobody will read.
//   - serverError: the server could not be reached or broke the connection;
//     the response is 502.
//   - failureCode: the server answered with one of failureCodes; its response
//     is kept.
//   - timeout: the pool's timeout (or the 5s connect timeout) expired before
//     the response headers arrived; the response is 504.
//
// # Connections
//
// Each Proxy has one tuned *http.Transport (large idle pools, HTTP/2 when the
// server offers it over TLS) unless the Env hands in a Transport, which is
// then used as is and never closed. When a new generation of a Proxy inherits
// from the previous one with the same transport settings it takes the
// transport over, warm connections included; the transport's idle
// connections are closed when the last Proxy using it is closed.
//
// # Concurrency
//
// Handle runs concurrently; it takes no lock. Counters are atomics. Inherit
// runs before the new Proxy serves, Close after the old one has stopped.
package proxy
