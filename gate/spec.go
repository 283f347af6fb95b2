package gate

import (
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"time"

	"github.com/sluicegw/sluice/pipeline"
)

// Spec is the configuration of an HTTPServer, in Easegress v2 field names:
//
//	kind: HTTPServer
//	name: server-demo
//	port: 10080
//	keepAlive: true
//	keepAliveTimeout: 60s
//	maxConnections: 10000
//	clientMaxBodySize: 4194304
//	trustedProxies: [10.0.0.0/8]
//	ipFilter: {blockByDefault: false, blockIPs: [192.0.2.0/24]}
//	accessLog: {enabled: true, sampling: 0.1}
//	https: true
//	certs: {api: "-----BEGIN CERTIFICATE-----\n..."}
//	keys: {api: "-----BEGIN PRIVATE KEY-----\n..."}
//	certFiles: [{cert: /etc/sluice/www.crt, key: /etc/sluice/www.key}]
//	clientCAFiles: [/etc/sluice/clients-ca.pem]
//	clientAuth: verify
//	minTLSVersion: "1.2"
//	rules:
//	  - host: api.example.com
//	    paths:
//	      - pathPrefix: /pipeline
//	        methods: [GET, POST]
//	        clientMaxBodySize: -1
//	        backend: pipeline-demo
type Spec struct {
	// Port is the TCP port to listen on. 0 picks a free port (tests); the
	// port actually bound is reported in Status.
	Port uint16 `yaml:"port"`
	// Address is the IP address to bind; empty means every interface.
	Address string `yaml:"address,omitempty"`
	// KeepAlive enables HTTP keep-alive connections. Default true.
	KeepAlive bool `yaml:"keepAlive"`
	// HTTPS serves TLS on the port. It needs at least one certificate
	// (certs/keys, certBase64/keyBase64 or certFiles). Default false.
	// Listener-level: a change on the same address waits for the
	// listener to be recreated (see the package comment).
	HTTPS bool `yaml:"https"`
	// AutoCert lets an https server go without a certificate of its own:
	// a name that no static certificate covers gets the certificate the
	// gateway's AutoCertManager obtained for it (Options.GetCertificate).
	// With static certificates too, those come first. Default false.
	AutoCert bool `yaml:"autoCert,omitempty"`
	// HTTP2 offers HTTP/2 over TLS by ALPN ("h2" before "http/1.1").
	// Default true (set by SetDefaults; the zero value offers HTTP/1.1
	// only). It takes effect with the generation, for new handshakes. It
	// has no effect on a cleartext listener: see H2C.
	HTTP2 bool `yaml:"http2"`
	// H2C accepts HTTP/2 with prior knowledge (RFC 9113 §3.3) on a
	// cleartext listener, beside HTTP/1.1. Default false; it needs
	// https: false. Listener-level. The HTTP/1.1 Upgrade to h2c is a
	// separate matter, per route: see Path.AllowH2CUpgrade.
	H2C bool `yaml:"h2c"`
	// HTTP3 serves HTTP/3 over QUIC on the UDP port of the same number,
	// beside the TCP listener (not instead of it), and advertises it to
	// HTTP/1.1 and HTTP/2 clients with an Alt-Svc header. It needs https:
	// HTTP/3 is always TLS 1.3, with the same certificates. QUIC 0-RTT is
	// not accepted (replayable requests). Default false. Listener-level.
	HTTP3 bool `yaml:"http3"`
	// MaxConcurrentStreams bounds the requests one HTTP/2 or HTTP/3
	// connection may have open at once (the HTTP/2 SETTINGS value; the
	// QUIC bidirectional stream limit). 0 means
	// DefaultMaxConcurrentStreams (250). Listener-level.
	MaxConcurrentStreams int `yaml:"maxConcurrentStreams,omitempty"`

	// Certs are PEM certificates (with their chains) by name, each with
	// the PEM private key of the same name in Keys. Several certificates
	// are chosen by SNI from the DNS names of their leaf (the subject
	// common name when it has none), wildcards included; a handshake
	// that names none of them gets the default certificate: the first of
	// certBase64, then certs in the order of their names, then certFiles.
	// Certificates, keys, client CAs, clientAuth, minTLSVersion and http2
	// take effect with the generation: an update on the same address
	// applies them to new handshakes without dropping a connection.
	Certs map[string]string `yaml:"certs,omitempty"`
	// Keys are the PEM private keys of Certs, by the same names.
	Keys map[string]string `yaml:"keys,omitempty"`
	// CertBase64 and KeyBase64 are one certificate and its key, PEM
	// base64-encoded (Easegress v1).
	CertBase64 string `yaml:"certBase64,omitempty"`
	KeyBase64  string `yaml:"keyBase64,omitempty"`
	// CertFiles are certificates and keys read from PEM files when the
	// server is built; to pick up new files, apply the spec again.
	CertFiles []CertFile `yaml:"certFiles,omitempty"`
	// CACertBase64 is a PEM bundle of CAs, base64-encoded, that client
	// certificates are verified against (mTLS).
	CACertBase64 string `yaml:"caCertBase64,omitempty"`
	// ClientCAFiles are PEM files of further client CAs.
	ClientCAFiles []string `yaml:"clientCAFiles,omitempty"`
	// ClientAuth is what the server asks of a client certificate: none;
	// request (asked for, not required, not verified); require (required,
	// not verified); verify (required and verified against the client
	// CAs). Empty means verify when a client CA is set (as Easegress does
	// with caCertBase64), none otherwise. verify needs a client CA.
	ClientAuth string `yaml:"clientAuth,omitempty"`
	// MinTLSVersion is the lowest TLS version accepted: "1.2" or "1.3".
	// Empty means "1.2". Cipher suites are Go's defaults; renegotiation
	// is never offered.
	MinTLSVersion string `yaml:"minTLSVersion,omitempty"`

	// RouterKind is how a rule's paths are chosen: "Ordered" (the
	// default, as in Easegress) tries them in order and the first that
	// matches wins; "RadixTree" compiles them into a tree, where path may
	// be a pattern (see Path) and the most specific path wins whatever
	// the order: an exact path, then patterns (at each position a static
	// segment before a regexp parameter before a plain parameter before
	// a catch-all), then pathPrefix (longest first), then pathRegexp (in
	// order), then paths with no path condition (in order). Paths that
	// tie keep their order. In both kinds a path is chosen only if its
	// methods, headers and queries match too; otherwise the next
	// candidate is tried.
	RouterKind string `yaml:"routerKind,omitempty"`
	// Rules are matched in order; the first rule whose host matches and one
	// of whose paths matches wins. A rule whose host matches but none of
	// whose paths do passes the request on to the next rule.
	Rules []Rule `yaml:"rules,omitempty"`
	// GlobalFilter names a GlobalFilter object whose before pipeline runs
	// ahead of every backend pipeline of this server, and whose after
	// pipeline runs after it, on the same request and response. While it
	// names an object that does not exist, requests are answered 503.
	GlobalFilter string `yaml:"globalFilter,omitempty"`

	// ReadHeaderTimeout is how long a client may take to send a request's
	// headers. 0 means DefaultReadHeaderTimeout (10s). Listener-level: see
	// the package comment.
	ReadHeaderTimeout time.Duration `yaml:"readHeaderTimeout,omitempty"`
	// ReadTimeout bounds reading a whole request, body included. 0 means
	// no limit. Listener-level.
	ReadTimeout time.Duration `yaml:"readTimeout,omitempty"`
	// WriteTimeout bounds the time from the end of the request headers to
	// the end of the response. 0 means no limit. Listener-level.
	WriteTimeout time.Duration `yaml:"writeTimeout,omitempty"`
	// KeepAliveTimeout is how long an idle keep-alive connection is kept
	// open. 0 means DefaultIdleTimeout (60s). Listener-level.
	KeepAliveTimeout time.Duration `yaml:"keepAliveTimeout,omitempty"`
	// MaxHeaderBytes bounds the size of a request's header block; a
	// larger one is answered 431. 0 means DefaultMaxHeaderBytes (1 MiB).
	// Listener-level.
	MaxHeaderBytes int `yaml:"maxHeaderBytes,omitempty"`
	// MaxConnections bounds the connections open at once. Connections
	// beyond it are not refused: they wait in the kernel's accept backlog
	// until one closes. 0 means no limit. Listener-level.
	MaxConnections int `yaml:"maxConnections,omitempty"`
	// ClientMaxBodySize bounds a request body in bytes, for every path
	// that does not set its own. A request whose Content-Length exceeds it
	// is answered 413 before it reaches the pipeline; a body that exceeds
	// it while streaming makes the pipeline's read fail with an
	// *http.MaxBytesError. 0 and -1 mean no limit (unlike Easegress, whose
	// default is 4 MiB).
	ClientMaxBodySize int64 `yaml:"clientMaxBodySize,omitempty"`

	// TrustedProxies are the CIDRs (IPv4 or IPv6; a bare address is a
	// /32 or /128) of the proxies in front of the server. Only when the
	// direct peer is one of them is the client address taken from
	// X-Forwarded-For (the rightmost address that is not a trusted proxy),
	// else X-Real-IP, else Forwarded (RFC 7239 for=); and only from them is
	// an incoming request ID kept. Empty trusts no one. See ClientIP.
	TrustedProxies []string `yaml:"trustedProxies,omitempty"`
	// RequestIDHeader is the header that carries the request ID. Empty
	// means DefaultRequestIDHeader (X-Request-Id). See RequestID.
	RequestIDHeader string `yaml:"requestIDHeader,omitempty"`
	// IPFilter refuses clients by their address (403) before routing; see
	// IPFilter. nil lets everyone through.
	IPFilter *IPFilter `yaml:"ipFilter,omitempty"`
	// AccessLog configures the access log; it is off by default.
	AccessLog AccessLog `yaml:"accessLog"`
	// Explain lets trusted clients ask why a request went where it went;
	// see Explain. nil (the default) is off.
	Explain *Explain `yaml:"explain,omitempty"`
}

// AccessLog configures the access log: one structured line ("access", at
// level Info) per sampled request, written to Options.AccessLogger.
type AccessLog struct {
	// Enabled turns the access log on. Default false: no cost at all.
	Enabled bool `yaml:"enabled"`
	// Sampling is the share of requests logged, 0 to 1. Default 1 (set by
	// SetDefaults; the zero value logs nothing). Sampling is
	// deterministic: of every n requests, n×sampling are logged, spread
	// evenly by a request counter.
	Sampling float64 `yaml:"sampling"`
}

// Rule matches a request by host, then by one of its paths.
//
// Host: a rule matches a request whose host (without port,
// case-insensitive) matches host, hostRegexp or any entry of hosts; one
// with none of them matches every host. As in Easegress, all three may be
// set and any one of them matching is enough.
type Rule struct {
	// Host matches the request host exactly, or, with one "*" at its start
	// or end, by suffix ("*.example.com": any name ending in
	// ".example.com", however many labels) or prefix ("www.example.*").
	Host string `yaml:"host,omitempty"`
	// HostRegexp matches the request host (without port) with a regexp.
	HostRegexp string `yaml:"hostRegexp,omitempty"`
	// Hosts are further hosts, each exact or wildcard as Host, or a
	// regexp as HostRegexp when isRegexp is true.
	Hosts []Host `yaml:"hosts,omitempty"`
	// Paths are the rule's paths; which one wins depends on the server's
	// routerKind (see Spec.RouterKind).
	Paths []Path `yaml:"paths,omitempty"`
	// AllowH2CUpgrade lets every path of the rule take the HTTP/1.1
	// Upgrade to h2c; see Path.AllowH2CUpgrade. Default false.
	AllowH2CUpgrade bool `yaml:"allowH2CUpgrade,omitempty"`
	// AllowUpgrade lets every path of the rule pass an HTTP/1.1 Upgrade
	// (WebSocket and others) on; see Path.AllowUpgrade. Default false.
	AllowUpgrade bool `yaml:"allowUpgrade,omitempty"`
	// IPFilter refuses clients by their address (403) on every path of
	// the rule, after the server's ipFilter; see IPFilter. nil lets
	// everyone through.
	IPFilter *IPFilter `yaml:"ipFilter,omitempty"`
}

// Host is one entry of Rule.Hosts.
type Host struct {
	// IsRegexp makes Value a regexp matched against the host.
	IsRegexp bool `yaml:"isRegexp,omitempty"`
	// Value is an exact host, a wildcard host ("*.example.com",
	// "www.example.*") or, with isRegexp, a regexp.
	Value string `yaml:"value"`
}

// Path matches the request path, method, headers and query, and names the
// pipeline that handles the request. At most one of Path, PathPrefix and
// PathRegexp may be set; none matches every path.
//
// With routerKind RadixTree, Path is a pattern: a segment "{name}" matches
// any one non-empty segment, "{name:regexp}" one whose whole text matches
// the regexp, and a final "*" matches the rest of the path, "/" included
// and possibly empty ("/static/*"). A parameter is a whole segment
// ("/files/{name}.json" is an error). The values are the request's path
// parameters (pipeline.PathParam; the catch-all's name is "*"). A Path
// without "{" or "*" is an exact path in both router kinds; with
// routerKind Ordered (the default) Path is always exact.
type Path struct {
	// Path is an exact path, or a pattern with routerKind RadixTree.
	Path string `yaml:"path,omitempty"`
	// PathPrefix matches every path that starts with it (by bytes, not
	// segments: "/api" matches "/apis").
	PathPrefix string `yaml:"pathPrefix,omitempty"`
	// PathRegexp matches the path with a regexp (unanchored unless it
	// says ^ and $).
	PathRegexp string `yaml:"pathRegexp,omitempty"`
	// RewriteTarget replaces the path that the pipeline and the backend
	// see, once the path is matched. With path it replaces the whole
	// path; with a RadixTree pattern "{name}" in it is replaced by the
	// parameter's value and "{*}" (or Easegress's "{EG_WILDCARD}") by the
	// catch-all's; with pathPrefix it replaces the prefix, and the rest
	// of the path follows it; with pathRegexp it is the replacement
	// template of regexp.ReplaceAllString ("$1", "${name}"), applied to
	// the matched parts. The result is normalised like a request path.
	// It needs one of path, pathPrefix and pathRegexp.
	RewriteTarget string `yaml:"rewriteTarget,omitempty"`
	// Methods the path allows; empty allows every method. A path that
	// allows GET allows HEAD.
	Methods []string `yaml:"methods,omitempty"`
	// Headers are conditions on request headers. By default one of them
	// must hold; with matchAllHeader, all of them.
	Headers []ValueMatch `yaml:"headers,omitempty"`
	// MatchAllHeader requires every entry of Headers to hold.
	MatchAllHeader bool `yaml:"matchAllHeader,omitempty"`
	// Queries are conditions on query parameters, like Headers.
	Queries []ValueMatch `yaml:"queries,omitempty"`
	// MatchAllQuery requires every entry of Queries to hold.
	MatchAllQuery bool `yaml:"matchAllQuery,omitempty"`
	// ClientMaxBodySize bounds the request body on this path and wins
	// over the server's: 0 means the server's ClientMaxBodySize, -1 means
	// no limit.
	ClientMaxBodySize int64 `yaml:"clientMaxBodySize,omitempty"`
	// Backend is the name of the pipeline that handles matching requests.
	Backend string `yaml:"backend"`
	// AllowH2CUpgrade lets a request routed here upgrade its cleartext
	// connection to HTTP/2 with "Upgrade: h2c" (RFC 7540 §3.2): the
	// server answers 101 and serves the request, and every later one on
	// the connection, as HTTP/2. Only a body-less HTTP/1.1 request with
	// exactly one HTTP2-Settings header is upgraded. Default false: the
	// offer is removed from the request, which is served as HTTP/1.1, as
	// it is on an https server.
	AllowH2CUpgrade bool `yaml:"allowH2CUpgrade,omitempty"`
	// AllowUpgrade lets a request routed here switch protocols with an
	// HTTP/1.1 Upgrade other than h2c (WebSocket, RFC 6455, and others):
	// the route's pipeline sees UpgradeAllowed in its
	// pipeline.RequestInfo, a Proxy passes Connection: Upgrade and
	// Upgrade to the server, and a 101 from it joins the two connections.
	// It is allowed when the path or its rule says true. Default false:
	// the Upgrade header (and the upgrade token of Connection) is removed
	// from the request, which is served as a normal one.
	AllowUpgrade bool `yaml:"allowUpgrade,omitempty"`
}

// ValueMatch is a condition on one request header or query parameter: its
// first value (empty when absent) is one of Values, or matches Regexp.
// Within matchAllHeader (matchAllQuery) both hold when both are set; else
// either is enough. At least one of Values and Regexp is needed.
type ValueMatch struct {
	// Key is the header name (case-insensitive) or query parameter name.
	Key    string   `yaml:"key"`
	Values []string `yaml:"values,omitempty"`
	Regexp string   `yaml:"regexp,omitempty"`
}

// CertFile names the PEM files of a certificate (with its chain) and of
// its private key.
type CertFile struct {
	Cert string `yaml:"cert"`
	Key  string `yaml:"key"`
}

// SetDefaults sets KeepAlive, HTTP2 and AccessLog.Sampling. The other
// defaults are those of the zero values, documented on the fields.
func (s *Spec) SetDefaults() {
	s.KeepAlive = true
	s.HTTP2 = true
	s.AccessLog.Sampling = 1
}

// Validate checks the spec; errors name the field.
func (s *Spec) Validate() error {
	if s.HTTPS && s.H2C {
		return pipeline.FieldErr("h2c", errors.New("h2c is HTTP/2 without TLS; it needs https: false"))
	}
	if s.HTTP3 && !s.HTTPS {
		return pipeline.FieldErr("http3", errors.New("HTTP/3 is always TLS; it needs https: true"))
	}
	if s.MaxConcurrentStreams < 0 {
		return pipeline.FieldErr("maxConcurrentStreams", errors.New("must not be negative"))
	}
	if err := s.validateTLS(); err != nil {
		return err
	}
	if s.Address != "" && net.ParseIP(s.Address) == nil {
		return pipeline.FieldErr("address", fmt.Errorf("%q is not an IP address", s.Address))
	}
	for _, d := range []struct {
		field string
		v     time.Duration
	}{
		{"readHeaderTimeout", s.ReadHeaderTimeout},
		{"readTimeout", s.ReadTimeout},
		{"writeTimeout", s.WriteTimeout},
		{"keepAliveTimeout", s.KeepAliveTimeout},
	} {
		if d.v < 0 {
			return pipeline.FieldErr(d.field, errors.New("must not be negative"))
		}
	}
	if s.MaxHeaderBytes < 0 {
		return pipeline.FieldErr("maxHeaderBytes", errors.New("must not be negative"))
	}
	if s.MaxConnections < 0 {
		return pipeline.FieldErr("maxConnections", errors.New("must not be negative"))
	}
	if s.ClientMaxBodySize < -1 {
		return pipeline.FieldErr("clientMaxBodySize", errors.New("must be -1 (no limit), 0 (no limit) or a size in bytes"))
	}
	for i, p := range s.TrustedProxies {
		if _, err := parsePrefix(p); err != nil {
			return pipeline.FieldErr("trustedProxies["+strconv.Itoa(i)+"]", err)
		}
	}
	if s.RequestIDHeader != "" && !isToken(s.RequestIDHeader) {
		return pipeline.FieldErr("requestIDHeader", fmt.Errorf("%q is not a header name", s.RequestIDHeader))
	}
	if !(s.AccessLog.Sampling >= 0 && s.AccessLog.Sampling <= 1) {
		return pipeline.FieldErr("accessLog.sampling", errors.New("must be between 0 and 1"))
	}
	if _, err := compileIPFilters(s); err != nil {
		return err
	}
	if err := s.Explain.validate(); err != nil {
		return err
	}
	return validateRules(s.RouterKind, s.Rules)
}

// ListenAddress returns the host:port the spec binds.
func (s *Spec) ListenAddress() string {
	return net.JoinHostPort(s.Address, strconv.Itoa(int(s.Port)))
}

// isToken reports whether m is an RFC 9110 token (a method or header name).
func isToken(m string) bool {
	if m == "" {
		return false
	}
	for _, c := range m {
		if c < '!' || c > '~' || strings.ContainsRune(`()<>@,;:\"/[]?={}`, c) {
			return false
		}
	}
	return true
}
