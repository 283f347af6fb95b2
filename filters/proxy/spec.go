package proxy

import (
	"crypto/tls"
	"errors"
	"fmt"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/sluicegw/sluice/pipeline"
)

// Defaults of the transport settings; zero values in a Spec mean these.
const (
	DefaultMaxIdleConns        = 10240
	DefaultMaxIdleConnsPerHost = 1024
	// DefaultServerMaxBodySize is the largest request body a pool with a
	// retry policy buffers for replay when serverMaxBodySize is 0: 4 MiB.
	DefaultServerMaxBodySize = 4 << 20
	// DefaultConnectTimeout bounds connecting to a server (TCP) when
	// connectTimeout is 0: 5s.
	DefaultConnectTimeout = 5 * time.Second
)

// Protocols of a pool (protocol).
const (
	// ProtocolAuto (the empty string, the default) speaks HTTP/1.1 to
	// http servers and HTTP/2 to https servers that offer it by ALPN,
	// HTTP/1.1 to those that do not.
	ProtocolAuto = ""
	// ProtocolH2C speaks HTTP/2 with prior knowledge (h2c) to http servers
	// and HTTP/2 to https servers; servers that do not speak HTTP/2 fail.
	ProtocolH2C = "h2c"
)

// tlsVersions are the accepted values of tls.minVersion.
var tlsVersions = map[string]uint16{"1.2": tls.VersionTLS12, "1.3": tls.VersionTLS13}

// Load-balancing policies (loadBalance.policy).
const (
	// PolicyRoundRobin takes the servers in turn (the default).
	PolicyRoundRobin = "roundRobin"
	// PolicyRandom picks a server uniformly at random.
	PolicyRandom = "random"
	// PolicyWeightedRandom picks a server at random in proportion to its
	// weight; weight 0 is never picked unless every weight is 0.
	PolicyWeightedRandom = "weightedRandom"
	// PolicyIPHash sends each client IP (the host of RemoteAddr) to the
	// same server, through the pool's hashing.
	PolicyIPHash = "ipHash"
	// PolicyHeaderHash sends each value of the header headerHashKey to the
	// same server, through the pool's hashing; requests without the header
	// are taken in turn.
	PolicyHeaderHash = "headerHash"
	// PolicyCookieHash sends each value of the cookie cookieName to the
	// same server, through the pool's hashing; requests without the
	// cookie are taken in turn.
	PolicyCookieHash = "cookieHash"
	// PolicyLeastRequest picks two servers at random and takes the one with
	// fewer attempts in flight (the power of two choices). Not in Easegress.
	PolicyLeastRequest = "leastRequest"
	// PolicyEWMA picks two servers at random and takes the one with the
	// lower peak-EWMA latency × (attempts in flight + 1). Not in Easegress.
	PolicyEWMA = "ewma"
)

// policies are the load-balancing policies, as listed in errors.
var policies = []string{PolicyRoundRobin, PolicyRandom, PolicyWeightedRandom, PolicyIPHash, PolicyHeaderHash, PolicyCookieHash, PolicyLeastRequest, PolicyEWMA}

// Consistent-hashing schemes (loadBalance.hashing) of the hash policies.
const (
	// HashingMaglev is a Maglev lookup table (the default): a prime number
	// of entries, DefaultMaglevTableSize or 100 per server when that is
	// more, spread evenly; removing one of n servers moves about 1/n of the
	// keys.
	HashingMaglev = "maglev"
	// HashingRing is a consistent-hash ring with RingVirtualNodes points
	// per server; removing a server moves only its own keys.
	HashingRing = "ring"
	// HashingModulo is the hash modulo the number of servers; a change of
	// the servers moves almost every key.
	HashingModulo = "modulo"
)

// Spec is the Proxy filter's configuration, with Easegress v2 field names:
//
//	kind: Proxy
//	pools:
//	- servers:                          # a candidate pool: it has a filter
//	  - url: http://127.0.0.1:9096
//	  filter:
//	    headers: {X-Canary: {exact: "yes"}}
//	- servers:                          # the main pool: no filter
//	  - url: http://127.0.0.1:9095
//	  loadBalance: {policy: roundRobin}
//	  timeout: 30s
//	  failureCodes: [502, 503]
//	connectTimeout: 2s
//	tls:                                # for https servers
//	  caFiles: [/etc/sluice/backend-ca.pem]
//
// Go callers fill the same struct and get the same defaults and validation
// through New or pipeline.Builder.
type Spec struct {
	// Pools are the server pools. Exactly one of them has no Filter: the
	// main pool, which takes every request no other pool took. The others
	// are candidate pools: each request goes to the first of them, in the
	// order of the spec, whose Filter matches it. Set Pools or MainPool,
	// not both.
	Pools []PoolSpec `yaml:"pools,omitempty"`
	// MainPool is the Easegress v1 spelling of the main pool; it must not
	// have a Filter. Setting both MainPool and Pools is an error.
	MainPool *PoolSpec `yaml:"mainPool,omitempty"`
	// CandidatePools is the Easegress v1 spelling of candidate pools: each
	// needs a Filter, and they are tried after the candidate pools of
	// Pools, in order. Empty means none.
	CandidatePools []PoolSpec `yaml:"candidatePools,omitempty"`
	// MaxIdleConns limits the idle (keep-alive) connections of the Proxy's
	// transport across all servers. 0 means DefaultMaxIdleConns (10240).
	// Ignored when the Env hands in a Transport.
	MaxIdleConns int `yaml:"maxIdleConns,omitempty"`
	// MaxIdleConnsPerHost limits the idle connections to each server. 0
	// means DefaultMaxIdleConnsPerHost (1024). Ignored when the Env hands in
	// a Transport.
	MaxIdleConnsPerHost int `yaml:"maxIdleConnsPerHost,omitempty"`
	// ConnectTimeout bounds connecting to a server (the TCP connect; the
	// TLS handshake has its own 10s limit), as a duration string. 0 means
	// DefaultConnectTimeout (5s); negative is an error. Expiry is answered
	// 504 with the result timeout. Runs on the real clock (it is the
	// dialer's). Ignored when the Env hands in a Transport. Not an
	// Easegress field.
	ConnectTimeout time.Duration `yaml:"connectTimeout,omitempty"`
	// ResponseHeaderTimeout bounds the wait for a server's response
	// headers once the request has been written, as a duration string.
	// 0 means no limit beyond the pool's timeouts; negative is an error.
	// Expiry is answered 504 with the result timeout. Runs on the real
	// clock (it is the transport's). Ignored when the Env hands in a
	// Transport. Not an Easegress field.
	ResponseHeaderTimeout time.Duration `yaml:"responseHeaderTimeout,omitempty"`
	// MTLS is Easegress v2's backend TLS: a CA to trust and a client
	// certificate, base64-encoded PEM. Nil means none. It combines with
	// TLS (the CAs of both are trusted), but only one of them may give a
	// client certificate. Ignored (with a warning) when the Env hands in a
	// Transport.
	MTLS *MTLSSpec `yaml:"mtls,omitempty"`
	// TLS configures how https servers are verified and how the Proxy
	// authenticates to them. Nil means the defaults: certificates verified
	// against the system roots, the server URL's host as the name, TLS 1.2
	// or later, no client certificate. Ignored (with a warning) when the
	// Env hands in a Transport. Not an Easegress field.
	TLS *TLSSpec `yaml:"tls,omitempty"`
	// MirrorPool receives a fire-and-forget copy of each request its
	// Filter matches (every request when Filter is nil), sent on the
	// Proxy's own goroutines after the request's body has been read by
	// the main path; its answers are discarded. The copy's body is
	// limited to the pool's serverMaxBodySize (4 MiB by default; -1:
	// only requests without a body are mirrored); larger copies are
	// dropped. retryPolicy, circuitBreakerPolicy, memoryCache and
	// healthCheck are not allowed in it. Nil means no mirroring.
	MirrorPool *PoolSpec `yaml:"mirrorPool,omitempty"`
	// MirrorQueueSize bounds the copies waiting for a mirror worker; a
	// copy that finds the queue full is dropped and counted. 0 means
	// DefaultMirrorQueueSize (1024). Only with mirrorPool. Not an
	// Easegress field.
	MirrorQueueSize int `yaml:"mirrorQueueSize,omitempty"`
	// MirrorWorkers is the number of goroutines sending copies to the
	// mirror pool. 0 means DefaultMirrorWorkers (4). Only with
	// mirrorPool. Not an Easegress field.
	MirrorWorkers int `yaml:"mirrorWorkers,omitempty"`
	// Compression compresses responses for clients that accept it; see
	// CompressionSpec. Nil means no compression.
	Compression *CompressionSpec `yaml:"compression,omitempty"`
}

// Defaults of the mirror settings.
const (
	// DefaultMirrorQueueSize is the number of copies that may wait for a
	// mirror worker when mirrorQueueSize is 0.
	DefaultMirrorQueueSize = 1024
	// DefaultMirrorWorkers is the number of mirror workers when
	// mirrorWorkers is 0.
	DefaultMirrorWorkers = 4
)

// MTLSSpec is Easegress v2's mtls section of a Proxy:
//
//	mtls:
//	  certBase64: LS0tLS1CRUdJTi...      # client certificate, base64 of PEM
//	  keyBase64: LS0tLS1CRUdJTi...       # its key
//	  rootCertBase64: LS0tLS1CRUdJTi...  # a CA to trust
type MTLSSpec struct {
	// CertBase64 is the client certificate presented to servers, PEM
	// encoded and then base64 encoded; it needs KeyBase64. Empty means
	// none.
	CertBase64 string `yaml:"certBase64,omitempty"`
	// KeyBase64 is CertBase64's private key, PEM then base64 encoded.
	KeyBase64 string `yaml:"keyBase64,omitempty"`
	// RootCertBase64 is one or more CA certificates, PEM then base64
	// encoded, trusted in addition to the system roots. Empty means none.
	RootCertBase64 string `yaml:"rootCertBase64,omitempty"`
}

// TLSSpec configures TLS to https servers:
//
//	tls:
//	  caFiles: [/etc/sluice/backend-ca.pem]
//	  certFile: /etc/sluice/client.pem   # mTLS
//	  keyFile: /etc/sluice/client-key.pem
//	  serverName: backend.internal
//	  minVersion: "1.3"
//
// Files are read when the Proxy is built (a reload reads them again).
// Every field is optional; the zero value is the default verification.
type TLSSpec struct {
	// CAFiles are PEM files of CA certificates trusted in addition to the
	// system roots. Each must hold at least one certificate.
	CAFiles []string `yaml:"caFiles,omitempty"`
	// CABase64 is more CA certificates, PEM then base64 encoded.
	CABase64 string `yaml:"caBase64,omitempty"`
	// CertFile is a PEM file with the client certificate (chain) presented
	// to servers that ask for one (mTLS); it needs KeyFile. Empty means
	// none.
	CertFile string `yaml:"certFile,omitempty"`
	// KeyFile is the PEM file of CertFile's private key.
	KeyFile string `yaml:"keyFile,omitempty"`
	// ServerName is sent as SNI and is the name the server's certificate
	// must carry, for every server of the Proxy. Empty means each server
	// URL's host.
	ServerName string `yaml:"serverName,omitempty"`
	// InsecureSkipVerify accepts any server certificate: the connection is
	// encrypted but the server is not authenticated. Default false; when
	// true the Proxy logs a warning each time it is built. Only for tests.
	InsecureSkipVerify bool `yaml:"insecureSkipVerify,omitempty"`
	// MinVersion is the lowest TLS version accepted: "1.2" (the default
	// when empty) or "1.3".
	MinVersion string `yaml:"minVersion,omitempty"`
}

// PoolSpec is one pool of servers, how requests are spread over them, and
// the resilience rules of an exchange with them:
//
//	pools:
//	- servers: [{url: http://127.0.0.1:9095}]
//	  timeout: 3s                       # the whole request, retries included
//	  perTryTimeout: 1s                 # each attempt
//	  retryPolicy: backend-retry        # a Retry policy of the pipeline
//	  circuitBreakerPolicy: backend-cb  # a CircuitBreaker policy of the pipeline
//	  failureCodes: [502, 503, 504]
//
// The policies are named entries of the pipeline's resilience section; see
// the package comment for how an exchange uses them.
type PoolSpec struct {
	// Servers are the pool's servers; at least one is required, unless
	// ServiceRegistry gives them.
	Servers []ServerSpec `yaml:"servers"`
	// ServiceRegistry names a service registry object (an
	// EtcdServiceRegistry, ConsulServiceRegistry, … of the gateway) whose
	// instances of ServiceName are the pool's servers, instead of Servers;
	// see discovery.go's comment. Empty means static Servers.
	ServiceRegistry string `yaml:"serviceRegistry,omitempty"`
	// ServiceName is the service whose instances the pool takes from
	// ServiceRegistry; required with it.
	ServiceName string `yaml:"serviceName,omitempty"`
	// LoadBalance chooses the server for each request. The zero value is
	// round robin.
	LoadBalance LoadBalanceSpec `yaml:"loadBalance,omitempty"`
	// Timeout is the overall deadline of a request to the pool, from the
	// first attempt until the response body has been read, retries and
	// their backoffs included, as a duration string ("30s", "500ms").
	// Expiry before the response headers arrive is answered 504 with the
	// result timeout; expiry while the body streams cuts the body. Empty or
	// "0s" means no limit beyond the client's own. It runs on Env.Clock
	// (resilience.WithTimeout), so a fake clock in tests moves it.
	Timeout time.Duration `yaml:"timeout,omitempty"`
	// PerTryTimeout bounds each attempt the same way (connecting, headers
	// and the body of the attempt whose response is kept), inside Timeout.
	// An attempt that runs out of it counts as failed and may be retried.
	// Empty or "0s" means no limit beyond Timeout. Not an Easegress field.
	PerTryTimeout time.Duration `yaml:"perTryTimeout,omitempty"`
	// RetryPolicy names a Retry policy of the pipeline's resilience section.
	// A failed attempt (the server could not be reached, broke the
	// connection, timed out, or answered with one of FailureCodes) is sent
	// again, with the policy's backoff and within its retry budget, when
	// the request is replayable: its method is GET, HEAD, OPTIONS, PUT or
	// DELETE, and it has no body or a body the pool buffered (see
	// ServerMaxBodySize). Empty means no retries.
	RetryPolicy string `yaml:"retryPolicy,omitempty"`
	// CircuitBreakerPolicy names a CircuitBreaker policy of the pipeline's
	// resilience section. Each attempt asks the breaker first; while it
	// refuses, the request is answered 503 with the result shortCircuited
	// and the servers are not contacted. Empty means no breaker.
	CircuitBreakerPolicy string `yaml:"circuitBreakerPolicy,omitempty"`
	// FailureCodes are response status codes that make the filter return
	// the result failureCode (the response is kept, so a jumpIf may replace
	// it or let it through); they count as failures for the breaker and
	// are retried. Each must be in 100..599. Empty means none.
	FailureCodes []int `yaml:"failureCodes,omitempty"`
	// ServerMaxBodySize is the largest request body, in bytes, that the
	// pool buffers so that a retry can send it again; it matters only with
	// a RetryPolicy and an idempotent method (without one, bodies always
	// stream). 0 means DefaultServerMaxBodySize (4 MiB); -1 means never
	// buffer, so no request with a body is retried. A body larger than the
	// limit is streamed and not retried. Values below -1 are errors.
	// (Easegress uses the field for the response body a filter may buffer;
	// responses here are always streamed.)
	ServerMaxBodySize int64 `yaml:"serverMaxBodySize,omitempty"`
	// Filter makes the pool a candidate pool that takes only the requests
	// it matches (see RequestMatcherSpec). Nil makes it the main pool.
	Filter *RequestMatcherSpec `yaml:"filter,omitempty"`
	// ServerTags keeps only the servers that carry every one of these tags
	// (ServerSpec.Tags); at least one server must. Empty means all servers.
	ServerTags []string `yaml:"serverTags,omitempty"`
	// SetUpstreamHost is the Host header sent to the pool's servers (and in
	// its health checks), in place of the server's host or, with keepHost,
	// the client's. Empty means not set.
	SetUpstreamHost string `yaml:"setUpstreamHost,omitempty"`
	// HealthCheck turns on active health checks of the pool's servers.
	// Nil means none. Not an Easegress v2 field name (Easegress has it per
	// pool too, with fewer settings).
	HealthCheck *HealthCheckSpec `yaml:"healthCheck,omitempty"`
	// OutlierDetection turns on passive ejection of servers that fail
	// requests in a row. Nil means none. Not an Easegress field.
	OutlierDetection *OutlierDetectionSpec `yaml:"outlierDetection,omitempty"`
	// Protocol is how the pool speaks to its servers: empty (ProtocolAuto,
	// HTTP/1.1, or HTTP/2 when an https server offers it) or h2c
	// (ProtocolH2C: HTTP/2 with prior knowledge to http servers, for
	// cleartext gRPC and other h2c backends). Ignored when the Env hands
	// in a Transport. Not an Easegress field.
	Protocol string `yaml:"protocol,omitempty"`
	// MemoryCache keeps the pool's cacheable responses in memory and
	// answers repeated requests from it; see MemoryCacheSpec. Nil means
	// no cache.
	MemoryCache *MemoryCacheSpec `yaml:"memoryCache,omitempty"`
}

// ServerSpec is one server of a pool.
type ServerSpec struct {
	// URL is the server's base URL: scheme http or https, a host (with an
	// optional port) and an optional path prefix that is joined to every
	// request's path. No query, fragment or credentials. Required.
	URL string `yaml:"url"`
	// Tags label the server for selection by later features (serverTags).
	Tags []string `yaml:"tags,omitempty"`
	// Weight is the server's share for weighted policies; 0 or more. The
	// roundRobin and random policies ignore it.
	Weight int `yaml:"weight,omitempty"`
	// KeepHost sends the client's Host header to this server instead of
	// the server's own host. Default false.
	KeepHost bool `yaml:"keepHost,omitempty"`
}

// LoadBalanceSpec chooses how a pool spreads requests over its servers:
//
//	loadBalance:
//	  policy: headerHash          # see the Policy constants
//	  headerHashKey: X-User
//	  hashing: maglev             # or ring, modulo
//	  stickySession:
//	    mode: DurationBased       # or CookieConsistentHash, ApplicationBased
//	    lbCookieExpire: 1h
//
// The hash policies and hashing sticky sessions ignore server weights.
type LoadBalanceSpec struct {
	// Policy is roundRobin (the default when empty), random,
	// weightedRandom, ipHash, headerHash, cookieHash, leastRequest or ewma;
	// see the
	// Policy constants.
	Policy string `yaml:"policy,omitempty"`
	// HeaderHashKey is the header the headerHash policy hashes; required
	// with it and not allowed with other policies.
	HeaderHashKey string `yaml:"headerHashKey,omitempty"`
	// CookieName is the cookie the cookieHash policy hashes; required with
	// it and not allowed with other policies.
	CookieName string `yaml:"cookieName,omitempty"`
	// Hashing is how keys map to servers for ipHash, headerHash and the
	// sticky sessions that hash (CookieConsistentHash, ApplicationBased):
	// maglev (the default when empty), ring or modulo. Not an Easegress
	// field; not allowed when nothing hashes.
	Hashing string `yaml:"hashing,omitempty"`
	// EWMADecay is the decay constant of the ewma policy's latency average,
	// as a duration: a sample weighs 1/e as much this much later. Empty or
	// 0 means DefaultEWMADecay (10s); not allowed with other policies. Not
	// an Easegress field.
	EWMADecay time.Duration `yaml:"ewmaDecay,omitempty"`
	// StickySession keeps a client's session on one server, in front of
	// Policy, which chooses for requests without a session (or whose
	// server left the pool). Nil or an empty mode means none.
	StickySession *StickySessionSpec `yaml:"stickySession,omitempty"`
}

// StickySessionSpec is Easegress's sticky session; see the Sticky mode
// constants.
type StickySessionSpec struct {
	// Mode is CookieConsistentHash, DurationBased or ApplicationBased.
	Mode string `yaml:"mode,omitempty"`
	// AppCookieName is the application's session cookie; required with
	// CookieConsistentHash and ApplicationBased.
	AppCookieName string `yaml:"appCookieName,omitempty"`
	// LBCookieName is the cookie that names the server (a hash of its URL,
	// not the URL) with DurationBased and ApplicationBased. Empty means
	// DefaultLBCookieName (EG_SESSION_STICKY).
	LBCookieName string `yaml:"lbCookieName,omitempty"`
	// LBCookieExpire is that cookie's lifetime (sent as Max-Age, with
	// Path=/ and HttpOnly), as a duration. Empty or 0 means
	// DefaultLBCookieExpire (2h).
	LBCookieExpire time.Duration `yaml:"lbCookieExpire,omitempty"`
}

// stickyModes are the sticky-session modes, as listed in errors.
var stickyModes = []string{StickyCookieConsistentHash, StickyDurationBased, StickyApplicationBased}

// SetDefaults fills in the transport defaults, so that they show in
// DefaultSpec and in round trips; zero values mean the same defaults.
func (s *Spec) SetDefaults() {
	s.MaxIdleConns = DefaultMaxIdleConns
	s.MaxIdleConnsPerHost = DefaultMaxIdleConnsPerHost
}

// Validate checks s. Errors are *pipeline.FieldError values naming the field.
func (s *Spec) Validate() error {
	switch {
	case s.MainPool != nil && len(s.Pools) > 0:
		return pipeline.FieldErr("mainPool", fmt.Errorf("%w: set either mainPool (the v1 spelling) or pools, not both", ErrTooManyPools))
	case s.MainPool == nil && len(s.Pools) == 0:
		return pipeline.FieldErr("pools", fmt.Errorf("%w: a Proxy needs one pool with at least one server", ErrNoPool))
	case s.MainPool != nil && s.MainPool.Filter != nil:
		return pipeline.FieldErr("mainPool.filter", fmt.Errorf("%w: the main pool takes every request; put a pool with a filter in candidatePools", ErrBadValue))
	}
	if s.MaxIdleConns < 0 {
		return pipeline.FieldErr("maxIdleConns", fmt.Errorf("%w: must be 0 or more", ErrBadValue))
	}
	if s.MaxIdleConnsPerHost < 0 {
		return pipeline.FieldErr("maxIdleConnsPerHost", fmt.Errorf("%w: must be 0 or more", ErrBadValue))
	}
	if s.ConnectTimeout < 0 {
		return pipeline.FieldErr("connectTimeout", fmt.Errorf("%w: must not be negative", ErrBadValue))
	}
	if s.ResponseHeaderTimeout < 0 {
		return pipeline.FieldErr("responseHeaderTimeout", fmt.Errorf("%w: must not be negative", ErrBadValue))
	}
	if err := s.validateTLS(); err != nil {
		return err
	}
	if err := s.validateMirror(); err != nil {
		return err
	}
	if s.Compression != nil {
		if err := s.Compression.validate("compression"); err != nil {
			return err
		}
	}
	main := -1
	for i := range s.Pools {
		if s.Pools[i].Filter != nil {
			continue
		}
		if main >= 0 {
			return pipeline.FieldErr("pools["+strconv.Itoa(i)+"]", fmt.Errorf("%w (the main pool); pools[%d] is already the main pool, give this one a filter", ErrTooManyPools, main))
		}
		main = i
	}
	if s.MainPool == nil && main < 0 {
		return pipeline.FieldErr("pools", fmt.Errorf("%w: every pool has a filter; one pool without a filter (the main pool) is required", ErrNoPool))
	}
	for i := range s.CandidatePools {
		if s.CandidatePools[i].Filter == nil {
			return pipeline.FieldErr("candidatePools["+strconv.Itoa(i)+"].filter", fmt.Errorf("%w: required in a candidate pool", ErrBadValue))
		}
	}
	for _, fp := range s.pools() {
		if err := fp.spec.validate(fp.field); err != nil {
			return err
		}
	}
	return nil
}

// fieldPool is a pool's spec with its field path.
type fieldPool struct {
	field string
	spec  *PoolSpec
}

// pools returns the pools in the order requests try them: the candidate
// pools of Pools, then CandidatePools, then the main pool. s has been
// validated far enough to have one main pool.
func (s *Spec) pools() []fieldPool {
	var ps []fieldPool
	var main fieldPool
	for i := range s.Pools {
		fp := fieldPool{"pools[" + strconv.Itoa(i) + "]", &s.Pools[i]}
		if fp.spec.Filter == nil {
			main = fp
			continue
		}
		ps = append(ps, fp)
	}
	for i := range s.CandidatePools {
		ps = append(ps, fieldPool{"candidatePools[" + strconv.Itoa(i) + "]", &s.CandidatePools[i]})
	}
	if s.MainPool != nil {
		main = fieldPool{"mainPool", s.MainPool}
	}
	return append(ps, main)
}

func (p *PoolSpec) validate(field string) error {
	if err := p.validateDiscovery(field); err != nil {
		return err
	}
	if len(p.Servers) == 0 && p.ServiceRegistry == "" {
		return pipeline.FieldErr(field+".servers", fmt.Errorf("%w: a pool needs at least one server (or serviceRegistry and serviceName)", ErrNoServer))
	}
	for i := range p.Servers {
		if err := p.Servers[i].validate(field + ".servers[" + strconv.Itoa(i) + "]"); err != nil {
			return err
		}
	}
	if err := p.LoadBalance.validate(field + ".loadBalance"); err != nil {
		return err
	}
	if p.Timeout < 0 {
		return pipeline.FieldErr(field+".timeout", fmt.Errorf("%w: must not be negative", ErrBadValue))
	}
	if p.PerTryTimeout < 0 {
		return pipeline.FieldErr(field+".perTryTimeout", fmt.Errorf("%w: must not be negative", ErrBadValue))
	}
	for i, code := range p.FailureCodes {
		if code < 100 || code > 599 {
			return pipeline.FieldErr(field+".failureCodes["+strconv.Itoa(i)+"]", fmt.Errorf("%w: status code %d is not in 100..599", ErrBadValue, code))
		}
	}
	if p.ServerMaxBodySize < -1 {
		return pipeline.FieldErr(field+".serverMaxBodySize", fmt.Errorf("%w: must be -1 (never buffer) or more", ErrBadValue))
	}
	if p.Filter != nil {
		if err := p.Filter.validate(field + ".filter"); err != nil {
			return err
		}
	}
	if len(p.ServerTags) > 0 && p.ServiceRegistry == "" && len(p.taggedServers()) == 0 {
		return pipeline.FieldErr(field+".serverTags", fmt.Errorf("%w: no server carries all of the tags %q", ErrNoServer, p.ServerTags))
	}
	if h := p.SetUpstreamHost; h != "" && (strings.ContainsAny(h, "/?#@ \t\r\n") || !validHeaderValue(h)) {
		return pipeline.FieldErr(field+".setUpstreamHost", fmt.Errorf("%w: %q is not a host", ErrBadValue, h))
	}
	if p.HealthCheck != nil {
		if err := p.HealthCheck.validate(field + ".healthCheck"); err != nil {
			return err
		}
	}
	if p.OutlierDetection != nil {
		if err := p.OutlierDetection.validate(field + ".outlierDetection"); err != nil {
			return err
		}
	}
	if p.MemoryCache != nil {
		if err := p.MemoryCache.validate(field + ".memoryCache"); err != nil {
			return err
		}
	}
	switch p.Protocol {
	case ProtocolAuto, ProtocolH2C:
	default:
		return pipeline.FieldErr(field+".protocol", fmt.Errorf("%w: unknown protocol %q (want %s or empty)", ErrBadValue, p.Protocol, ProtocolH2C))
	}
	return nil
}

// validateMirror checks mirrorPool and its settings.
func (s *Spec) validateMirror() error {
	if s.MirrorPool == nil {
		switch {
		case s.MirrorQueueSize != 0:
			return pipeline.FieldErr("mirrorQueueSize", fmt.Errorf("%w: only allowed with mirrorPool", ErrBadValue))
		case s.MirrorWorkers != 0:
			return pipeline.FieldErr("mirrorWorkers", fmt.Errorf("%w: only allowed with mirrorPool", ErrBadValue))
		}
		return nil
	}
	mp := s.MirrorPool
	switch {
	case s.MirrorQueueSize < 0:
		return pipeline.FieldErr("mirrorQueueSize", fmt.Errorf("%w: must be 0 or more", ErrBadValue))
	case s.MirrorWorkers < 0:
		return pipeline.FieldErr("mirrorWorkers", fmt.Errorf("%w: must be 0 or more", ErrBadValue))
	case s.MirrorWorkers > 1024:
		return pipeline.FieldErr("mirrorWorkers", fmt.Errorf("%w: at most 1024", ErrBadValue))
	case mp.RetryPolicy != "":
		return pipeline.FieldErr("mirrorPool.retryPolicy", fmt.Errorf("%w: a mirror sends each copy once", ErrBadValue))
	case mp.CircuitBreakerPolicy != "":
		return pipeline.FieldErr("mirrorPool.circuitBreakerPolicy", fmt.Errorf("%w: not supported in a mirror pool", ErrBadValue))
	case mp.MemoryCache != nil:
		return pipeline.FieldErr("mirrorPool.memoryCache", fmt.Errorf("%w: not supported in a mirror pool", ErrBadValue))
	case mp.HealthCheck != nil:
		return pipeline.FieldErr("mirrorPool.healthCheck", fmt.Errorf("%w: not supported in a mirror pool", ErrBadValue))
	}
	return mp.validate("mirrorPool")
}

// validateTLS checks the tls and mtls sections without reading files;
// building the Proxy reads and parses them.
func (s *Spec) validateTLS() error {
	mt, t := s.MTLS, s.TLS
	if mt != nil {
		switch {
		case mt.CertBase64 != "" && mt.KeyBase64 == "":
			return pipeline.FieldErr("mtls.keyBase64", fmt.Errorf("%w: required with certBase64", ErrBadTLS))
		case mt.CertBase64 == "" && mt.KeyBase64 != "":
			return pipeline.FieldErr("mtls.certBase64", fmt.Errorf("%w: required with keyBase64", ErrBadTLS))
		}
	}
	if t == nil {
		return nil
	}
	switch {
	case t.CertFile != "" && t.KeyFile == "":
		return pipeline.FieldErr("tls.keyFile", fmt.Errorf("%w: required with certFile", ErrBadTLS))
	case t.CertFile == "" && t.KeyFile != "":
		return pipeline.FieldErr("tls.certFile", fmt.Errorf("%w: required with keyFile", ErrBadTLS))
	case t.CertFile != "" && mt != nil && mt.CertBase64 != "":
		return pipeline.FieldErr("tls.certFile", fmt.Errorf("%w: mtls.certBase64 gives a client certificate already; set one of them", ErrBadTLS))
	case t.MinVersion != "" && tlsVersions[t.MinVersion] == 0:
		return pipeline.FieldErr("tls.minVersion", fmt.Errorf("%w: unknown TLS version %q (want \"1.2\" or \"1.3\")", ErrBadTLS, t.MinVersion))
	case t.ServerName != "" && (strings.ContainsAny(t.ServerName, "/:?#@ ") || !validHeaderValue(t.ServerName)):
		return pipeline.FieldErr("tls.serverName", fmt.Errorf("%w: %q is not a host name", ErrBadTLS, t.ServerName))
	}
	for i, f := range t.CAFiles {
		if f == "" {
			return pipeline.FieldErr("tls.caFiles["+strconv.Itoa(i)+"]", fmt.Errorf("%w: empty file name", ErrBadTLS))
		}
	}
	return nil
}

// taggedServers returns the indexes of the servers that carry every one of
// ServerTags: all of them when ServerTags is empty.
func (p *PoolSpec) taggedServers() []int {
	var idx []int
	for i := range p.Servers {
		if hasAll(p.Servers[i].Tags, p.ServerTags) {
			idx = append(idx, i)
		}
	}
	return idx
}

func hasAll(have, want []string) bool {
	for _, t := range want {
		if !slices.Contains(have, t) {
			return false
		}
	}
	return true
}

// validHeaderValue reports whether v has no control characters.
func validHeaderValue(v string) bool {
	for i := 0; i < len(v); i++ {
		if v[i] < ' ' || v[i] == 0x7f {
			return false
		}
	}
	return true
}

func (lb *LoadBalanceSpec) validate(field string) error {
	if lb.Policy != "" && !slices.Contains(policies, lb.Policy) {
		return pipeline.FieldErr(field+".policy", fmt.Errorf("%w %q (want one of %s)", ErrUnknownPolicy, lb.Policy, strings.Join(policies, ", ")))
	}
	switch {
	case lb.Policy == PolicyHeaderHash && lb.HeaderHashKey == "":
		return pipeline.FieldErr(field+".headerHashKey", fmt.Errorf("%w: required with policy %s", ErrBadValue, PolicyHeaderHash))
	case lb.Policy != PolicyHeaderHash && lb.HeaderHashKey != "":
		return pipeline.FieldErr(field+".headerHashKey", fmt.Errorf("%w: only allowed with policy %s", ErrBadValue, PolicyHeaderHash))
	case lb.HeaderHashKey != "" && !validToken(lb.HeaderHashKey):
		return pipeline.FieldErr(field+".headerHashKey", fmt.Errorf("%w: %q is not a header name", ErrBadValue, lb.HeaderHashKey))
	case lb.Policy == PolicyCookieHash && lb.CookieName == "":
		return pipeline.FieldErr(field+".cookieName", fmt.Errorf("%w: required with policy %s", ErrBadValue, PolicyCookieHash))
	case lb.Policy != PolicyCookieHash && lb.CookieName != "":
		return pipeline.FieldErr(field+".cookieName", fmt.Errorf("%w: only allowed with policy %s", ErrBadValue, PolicyCookieHash))
	case lb.CookieName != "" && !validToken(lb.CookieName):
		return pipeline.FieldErr(field+".cookieName", fmt.Errorf("%w: %q is not a cookie name", ErrBadValue, lb.CookieName))
	case lb.EWMADecay < 0:
		return pipeline.FieldErr(field+".ewmaDecay", fmt.Errorf("%w: must not be negative", ErrBadValue))
	case lb.EWMADecay != 0 && lb.Policy != PolicyEWMA:
		return pipeline.FieldErr(field+".ewmaDecay", fmt.Errorf("%w: only allowed with policy %s", ErrBadValue, PolicyEWMA))
	}
	hashes := lb.Policy == PolicyIPHash || lb.Policy == PolicyHeaderHash || lb.Policy == PolicyCookieHash
	if ss := lb.StickySession; ss != nil && ss.Mode != "" {
		if err := ss.validate(field + ".stickySession"); err != nil {
			return err
		}
		hashes = hashes || ss.Mode != StickyDurationBased
	} else if ss != nil && (ss.AppCookieName != "" || ss.LBCookieName != "" || ss.LBCookieExpire != 0) {
		return pipeline.FieldErr(field+".stickySession.mode", fmt.Errorf("%w: required (one of %s)", ErrBadValue, strings.Join(stickyModes, ", ")))
	}
	switch lb.Hashing {
	case "", HashingMaglev, HashingRing, HashingModulo:
	default:
		return pipeline.FieldErr(field+".hashing", fmt.Errorf("%w: unknown hashing %q (want %s, %s or %s)", ErrBadValue, lb.Hashing, HashingMaglev, HashingRing, HashingModulo))
	}
	if lb.Hashing != "" && !hashes {
		return pipeline.FieldErr(field+".hashing", fmt.Errorf("%w: only allowed with policy %s, %s or %s, or a hashing sticky session", ErrBadValue, PolicyIPHash, PolicyHeaderHash, PolicyCookieHash))
	}
	return nil
}

func (ss *StickySessionSpec) validate(field string) error {
	switch {
	case !slices.Contains(stickyModes, ss.Mode):
		return pipeline.FieldErr(field+".mode", fmt.Errorf("%w: unknown mode %q (want one of %s)", ErrBadValue, ss.Mode, strings.Join(stickyModes, ", ")))
	case ss.AppCookieName == "" && ss.Mode != StickyDurationBased:
		return pipeline.FieldErr(field+".appCookieName", fmt.Errorf("%w: required with mode %s", ErrBadValue, ss.Mode))
	case ss.AppCookieName != "" && !validToken(ss.AppCookieName):
		return pipeline.FieldErr(field+".appCookieName", fmt.Errorf("%w: %q is not a cookie name", ErrBadValue, ss.AppCookieName))
	case ss.LBCookieName != "" && !validToken(ss.LBCookieName):
		return pipeline.FieldErr(field+".lbCookieName", fmt.Errorf("%w: %q is not a cookie name", ErrBadValue, ss.LBCookieName))
	case ss.LBCookieExpire < 0:
		return pipeline.FieldErr(field+".lbCookieExpire", fmt.Errorf("%w: must not be negative", ErrBadValue))
	}
	return nil
}

// validToken reports whether s is a non-empty HTTP token (a header or
// cookie name).
func validToken(s string) bool {
	return s != "" && validMethod(s)
}

func (s *ServerSpec) validate(field string) error {
	if _, err := parseServerURL(s.URL); err != nil {
		return pipeline.FieldErr(field+".url", err)
	}
	if s.Weight < 0 {
		return pipeline.FieldErr(field+".weight", fmt.Errorf("%w: must be 0 or more", ErrBadValue))
	}
	return nil
}

// parseServerURL parses and checks a server URL. Its errors never echo the
// URL's credentials.
func parseServerURL(raw string) (*url.URL, error) {
	if raw == "" {
		return nil, fmt.Errorf("%w: required", ErrBadURL)
	}
	u, err := url.Parse(raw)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return nil, fmt.Errorf("%w: %v", ErrBadURL, err)
	}
	switch {
	case u.User != nil:
		return nil, fmt.Errorf("%w: credentials in a server url are not supported", ErrBadURL)
	case u.Scheme != "http" && u.Scheme != "https":
		return nil, fmt.Errorf("%w %q: the scheme must be http or https", ErrBadURL, raw)
	case u.Host == "" || u.Hostname() == "":
		return nil, fmt.Errorf("%w %q: a host is required", ErrBadURL, raw)
	case u.RawQuery != "" || u.ForceQuery || u.Fragment != "":
		return nil, fmt.Errorf("%w %q: a query or fragment is not allowed", ErrBadURL, raw)
	}
	return u, nil
}
