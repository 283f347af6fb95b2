// Package proxy is the Proxy filter: it sends the request to a server chosen
// from a pool and puts the server's response into the Context, where later
// filters may change it before the pipeline writes it to the client.
//
// # The model
//
//	Context.Request ─► Proxy ─► first candidate pool whose filter matches, else the main pool
//	                             └─► Pool ─► LoadBalancer.Choose (skipping unhealthy servers) ─► Server
//	                                                                                            │
//	Context.SetResponse ◄── response, streamed ◄── http.RoundTripper ◄── outbound request ◄─────┘
//
// # Pools
//
// A Proxy has pools of servers. Exactly one pool has no filter: the main
// pool, which takes every request no other pool takes. The others are
// candidate pools, tried in the order of the spec (pools, then the v1
// candidatePools); a request goes to the first whose filter matches it.
// The Easegress v1 spellings mainPool and candidatePools are accepted. A
// filter is Easegress's request matcher: policy general matches headers
// (exact, prefix, regex or empty; any one rule, or all with
// matchAllHeaders) and then, if given, methods and paths (any one rule, or
// all with matchAllURLs); policies random, ipHash (by pipeline.ClientIP)
// and headerHash (by the header headerHashKey) match permil ‰ of the
// requests, the hash policies always the same clients — the canary
// mechanism. A pool's serverTags keeps only the servers carrying all those
// tags; its setUpstreamHost is the Host header its servers get. A pool
// with serviceRegistry and serviceName takes its servers from a service
// registry (pipeline.ServiceRegistry, found through Env.Registries) and
// follows its changes: the healthy instances become the servers, swapped
// in atomically; the last known ones stay while the registry is
// unreachable, and the pool's status says stale.
//
// The pool's LoadBalancer picks a Server (roundRobin by default; see Load
// balancing).
// The outbound request follows the rules of httputil.ReverseProxy's Rewrite
// hook, in a small core of this package rather than ReverseProxy itself,
// because the response goes into the Context instead of to the client:
//
//   - the URL's scheme and host are the server's; its path is the server URL's
//     path joined to the request's path with a single slash; the query is kept;
//   - hop-by-hop headers are removed (and those the Connection header names);
//   - X-Forwarded-For gets the client's IP (from RemoteAddr) appended;
//     X-Forwarded-Host and X-Forwarded-Proto are set unless present;
//   - the Host header is the pool's setUpstreamHost when set, else the
//     server's, or the client's when the server has keepHost set;
//   - the body is streamed, unless a retry policy needs it buffered (see
//     Resilience).
//
// The response's hop-by-hop headers are removed and its body is left
// streaming; the pipeline writes it with pipeline.WriteResponse.
//
// # Upgrades (WebSocket)
//
// A request that asks to switch protocols (HTTP/1.1 with Connection:
// upgrade and an Upgrade header) keeps its Connection: Upgrade and Upgrade
// headers only when its gate allowed it (pipeline.RequestInfo's
// UpgradeAllowed, from the route's allowUpgrade); anything else
// hop-by-hop is still removed. Such a request goes over HTTP/1.1 whatever
// the pool's protocol, is sent once (no retry, no body buffering), and the
// pool's timeouts bound only the wait for the answer. A 101 answer keeps
// its Connection and Upgrade headers, and its body is the upgraded
// connection, an io.ReadWriteCloser: pipeline.WriteResponse joins it to
// the client's. A 101 to a request that was not allowed to upgrade is a
// 502 (serverError). The Proxy keeps track of the upgraded connections
// it hands out, and Close closes those still open, which ends their join
// to the client: a gateway's shutdown cannot drain a tunnel, so it cuts
// it. Status shows how many are open.
//
// # Informational responses
//
// A 1xx answer a server sends before its final response (100 Continue,
// 103 Early Hints with its Link headers) is passed on to the client as it
// arrives, through pipeline.Context.WriteInterim, without its hop-by-hop
// headers and without leaving its headers on the final response; not to
// HTTP/1.0 clients, and not once the attempt is over.
//
// # Load balancing
//
// loadBalance.policy is one of Easegress's roundRobin, random,
// weightedRandom (by server weight), ipHash (the host of RemoteAddr),
// headerHash (the value of headerHashKey; requests without it are taken in
// turn) and cookieHash (the value of the cookie cookieName; requests
// without it are taken in turn), or one of two policies that learn from outcomes: leastRequest
// picks two servers at random and takes the one with fewer attempts in
// flight, and ewma takes the one with the lower peak-EWMA latency × (attempts
// in flight + 1), the average decaying with ewmaDecay (10s) on Env.Clock.
// These two implement FeedbackBalancer: the pool reports each attempt's
// time to the response headers and whether it failed (a failure counts as
// at least 1s). Their counts and averages live with the server's counters,
// so they survive a reload that keeps the server's URL.
//
// The hash policies map a key's hash to a server through loadBalance.hashing:
// a Maglev table (the default; 65537 entries, or a prime of at least 100
// per server), a ring of 160 points per server, or modulo. Maglev and the
// ring move about 1/n of the keys when one of n servers leaves or joins;
// modulo moves most. The hashes depend only on the key and the servers'
// URLs, so gateways with the same servers agree.
//
// loadBalance.stickySession keeps a session on one server in front of the
// policy, as in Easegress: CookieConsistentHash hashes the cookie
// appCookieName; DurationBased sets a cookie lbCookieName
// (EG_SESSION_STICKY) naming the server by a hash of its URL, for
// lbCookieExpire (2h), and honours it while that server is in the pool;
// ApplicationBased sets that cookie when the server sets appCookieName and
// sends requests with appCookieName to the server it names, or else to the
// one appCookieName's value hashes to. Requests without a session go to
// the policy. Choose, Done and the cookie checks do not allocate; setting a
// cookie does.
//
// # Health
//
// A pool may check its servers actively and eject them passively; a
// server that fails either is skipped by every load-balancing policy until
// it recovers. When no server of the pool is left, the policy's own choice
// is used (fail open): a pool with every server down still sends requests
// rather than refusing them all.
//
// healthCheck sends, every interval (10s) on Env.Clock, one request to each
// server of the pool at once: method (GET) to path (/) joined to the server
// URL's path, with the pool's setUpstreamHost as Host, through the Proxy's
// transport, within timeout (3s). It passes when the status is in
// expectedStatus (200..399 when empty) and, if set, expectedBody occurs in
// the first 64 KiB of the body. fails (3) failures in a row mark a server
// down, passes (2) passes in a row mark it up again; servers start up. The
// checks of all the Proxy's pools run on one goroutine, started by the
// first Handle and stopped by Close, which waits for it to end.
//
// outlierDetection counts each attempt's outcome per server: consecutive5xx
// (5) responses with a 5xx status in a row, or consecutiveConnectErrors (3)
// attempts in a row that got no response (the server could not be
// reached, broke the connection or timed out), eject the server for
// ejectionTime (30s, on Env.Clock); any other response resets both counts.
// An ejection that would leave more than maxEjectionPercent (50) of the
// pool's servers ejected at once does not happen. An ejected server
// returns by itself when the time is up; there is no goroutine for it.
//
// Choose looks at one atomic word per server it considers, so a healthy
// pool pays one atomic load per request; without healthCheck and
// outlierDetection the policy runs bare. Hash and sticky policies move the
// keys of an unavailable server to the next available one in the pool's
// order, so other keys stay put; the other policies replace it by a random
// available one. The health state lives with the server's counters, so a
// reload that keeps a server's URL in the same pool (the main pool, or the
// candidate pool at the same place in the order) keeps its state (down,
// ejected, the counts in a row). Status shows healthy, ejected and the
// number of checks per server.
//
// # Resilience
//
// A pool may name a CircuitBreaker and a Retry policy of the pipeline's
// resilience section (circuitBreakerPolicy, retryPolicy; see filters/policy),
// and bound requests in time (timeout overall, perTryTimeout per attempt).
// A request goes through them in this order:
//
//	overall deadline (timeout, on Env.Clock)
//	└─ Retry.Do: attempt 1, 2, … with backoff, within the retry budget
//	   └─ Breaker.Acquire ── refused ─► 503, shortCircuited, no server contacted
//	      └─ per-try deadline (perTryTimeout) ─► choose a server ─► round trip
//	         └─ outcome ─► LoadBalancer feedback, Permit.Done(failed) or Permit.Release
//
// An attempt's outcome is classified once, for the breaker, the retry and
// the result alike:
//
//   - failed: the server could not be reached or broke the connection
//     (serverError), an attempt or the request ran out of time (timeout),
//     or the server answered with one of failureCodes (failureCode);
//   - success: any other response, whatever its status;
//   - neither: the client went away, or its body could not be read
//     (clientError); the breaker permit is released without an outcome and
//     the request is not retried.
//
// The breaker learns an outcome when the response headers arrive (or the
// attempt fails before), so its slow-call duration is the time to the
// response headers. A failed attempt is retried only when the request can
// be sent again: its method is GET, HEAD, OPTIONS, PUT or DELETE, and it
// has no body or one the pool buffered. With a retry policy, an idempotent
// request's body of at most serverMaxBodySize (default 4 MiB; -1: never
// buffer) is read into memory before the first attempt, and every attempt
// sends it from a fresh reader; a larger body, and the body of a POST or
// PATCH, is streamed once and never retried. Before another attempt the
// failed one's response body is drained (up to 64 KiB) and closed. The
// policy's backoff, budget and attempt count decide the rest; no attempt is
// made, and no backoff slept, once the overall deadline has passed or
// would pass during the backoff. The last attempt's outcome is the
// request's. Attempts past the first count in the pool's status as
// retries; the breaker's state shows there too.
//
// # Mirror
//
// mirrorPool (Easegress's) gets a copy of each request its filter matches
// (all of them without a filter), fire and forget: the copy waits in a
// queue of mirrorQueueSize (1024) for one of mirrorWorkers (4) goroutines,
// which send it to a server of the pool, once, within the pool's timeout,
// and discard the answer. The main path never waits for the mirror: the
// request body streams to the main server while a tee keeps a copy of up
// to the mirror pool's serverMaxBodySize (4 MiB; -1: bodies are never
// copied), and the copy is queued when the main path has read the body to
// its end. A copy is dropped, and counted in Status, when the queue is
// full, when its body is larger than the limit or was not read to its
// end, and when the Proxy closes. The workers start with the first copy;
// Close cancels the copies being sent and waits for the workers to end.
//
// # Memory cache
//
// A pool's memoryCache (Easegress's codes, expiration, maxEntryBytes and
// methods, and maxTotalBytes) answers repeated requests from memory. The
// key is the method, host, path and query; an entry also keeps the values
// of the request headers its response's Vary names, which a later request
// must match. Requests with Authorization, or Cache-Control no-store, are
// not cached; no-cache (or max-age=0, or Pragma: no-cache) skips the
// lookup but stores the answer. A response is stored when its status is
// one of codes (200), it has no Set-Cookie, no Vary: *, no trailers, no
// Cache-Control no-store, no-cache or private, and its body, read to the
// end by the client, is at most maxEntryBytes (1 MiB); it lives for
// expiration, or s-maxage or max-age when shorter, on Env.Clock. Beyond
// maxTotalBytes (64 MiB) the least recently used entries are evicted. A
// hit carries an Age header, costs one lock and no server, and counts in
// the pool's status with the misses, stores and evictions. A reload that
// keeps the cache's settings keeps its entries. The cache adds no header
// of its own to responses.
//
// # Compression
//
// compression (Easegress's minLength, and our algorithms and
// contentTypes) compresses responses with br, zstd or gzip, whichever the
// client's Accept-Encoding prefers by q-value (ties go to the order of
// algorithms). Only responses of contentTypes (text/*, JSON, JavaScript,
// XML, SVG by default) are compressed, and not those already encoded, of
// status 1xx, 204, 206 or 304, to HEAD requests, with Cache-Control
// no-transform, or with a Content-Length below minLength. Such responses
// get Vary: Accept-Encoding whether compressed or not. A compressed
// response streams without Content-Length and with a weak ETag; each
// chunk read from the server is compressed and flushed, so server-sent
// events arrive as they are sent. Encoders and buffers are pooled per
// Proxy. Responses from the memory cache are compressed on the way out;
// the cache keeps them as the server sent them.
//
// # Results
//
// Handle returns the empty result when the server answered with a status
// that is not one of the pool's failureCodes, and otherwise one of:
//
//   - internalError: the outbound request could not be built (a previous
//     filter left no request or an invalid one); the response is 500, or
//     503 when the pool had no server to take the request.
//   - clientError: the client went away (its context was cancelled) or its
//     request body could not be read. A body error is answered 400 (413
//     when the body exceeded the server's limit); a cancelled request gets
//     a bare 400 nobody will read.
//   - serverError: the server could not be reached or broke the connection;
//     the response is 502.
//   - failureCode: the server answered with one of failureCodes; its response
//     is kept.
//   - timeout: the pool's timeout or perTryTimeout (or the 5s connect
//     timeout) expired before the response headers arrived; the response
//     is 504.
//   - shortCircuited: the pool's circuit breaker is open (or half-open with
//     its trial calls taken) and refused the request, or its next attempt;
//     the response is a plain-text 503 and the refused attempt contacted no
//     server.
//
// A jumpIf may send a short-circuited request to a Fallback filter:
//
//	flow:
//	- filter: proxy
//	  jumpIf: {shortCircuited: fallback}
//	- ...               # steps for a server's response; one must end the flow
//	- filter: fallback
//
// With retries, the result is the last attempt's.
//
// # Connections
//
// Each Proxy has one tuned *http.Transport (large idle pools, HTTP/2 when an
// https server offers it by ALPN, HTTP/1.1 otherwise), a second one
// speaking HTTP/2 with prior knowledge for its pools with protocol h2c
// (cleartext HTTP/2, as gRPC servers without TLS expect), and a third one
// speaking HTTP/1.1 only, for Upgrades, unless the Env
// hands in a Transport, which is then used as is and never closed (the
// spec's transport settings, tls, mtls and protocol are then ignored, with a
// warning). connectTimeout (5s) bounds the TCP connect and
// responseHeaderTimeout (none by default) the wait for response headers;
// both run on the real clock, inside the pools' timeouts; expiry is 504
// timeout.
//
// Server certificates are verified against the system roots and the server
// URL's host. tls (and Easegress's mtls, base64 PEM) add CAs to trust
// (caFiles, caBase64, rootCertBase64), a client certificate for servers that
// require one (certFile and keyFile, or certBase64 and keyBase64), a server
// name to send and verify instead of the URL's host (serverName), and a
// minimum version (minVersion, "1.2" by default). insecureSkipVerify turns
// verification off; it must be set explicitly and the Proxy logs a warning
// when it is built. Files are read when the Proxy is built; errors name the
// field. A server whose certificate does not verify is answered 502 with the
// result serverError, and logged at Warn once a minute per server on
// Env.Clock (at Debug in between), with the server's URL and the
// verification error.
//
// When a new generation of a Proxy inherits from the previous one with the
// same transport settings (idle pool sizes, the two timeouts, whether a pool
// uses h2c, and the TLS settings with the bytes of every CA, certificate and
// key as read) it takes the transport over, warm connections included; the
// transport's idle connections are closed when the last Proxy using it is
// closed.
//
// # Concurrency
//
// Handle runs concurrently; it takes no lock (the breaker and the retry
// budget have their own; see resilience; an ejection takes the pool's
// outlier lock; the memory cache takes its lock per lookup and store).
// Counters and health flags are atomics. The health checker and the
// mirror's workers are the Proxy's only goroutines. Inherit runs before
// the new Proxy serves,
// Close after the old one has stopped.
// The policies belong to the pipeline, which hands their state to the next
// generation when a reload leaves them unchanged: an open breaker stays
// open across a reload of the Proxy.
package proxy
