package gate

import (
	"errors"
	"fmt"
	"net"
	"regexp"
	"strconv"
	"strings"

	"github.com/sluicegw/sluice/pipeline"
)

// Spec is the configuration of an HTTPServer, in Easegress v2 field names:
//
//	kind: HTTPServer
//	name: server-demo
//	port: 10080
//	keepAlive: true
//	rules:
//	  - host: api.example.com
//	    paths:
//	      - pathPrefix: /pipeline
//	        methods: [GET, POST]
//	        backend: pipeline-demo
type Spec struct {
	// Port is the TCP port to listen on. 0 picks a free port (tests); the
	// port actually bound is reported in Status.
	Port uint16 `yaml:"port"`
	// Address is the IP address to bind; empty means every interface.
	Address string `yaml:"address,omitempty"`
	// KeepAlive enables HTTP keep-alive connections. Default true.
	KeepAlive bool `yaml:"keepAlive"`
	// HTTPS must be false for now: TLS serving is not built yet.
	HTTPS bool `yaml:"https"`
	// Rules are matched in order; the first rule whose host matches and one
	// of whose paths matches wins.
	Rules []Rule `yaml:"rules,omitempty"`
}

// Rule matches a request by host, then by one of its paths.
type Rule struct {
	// Host matches the request host exactly (case-insensitive, port
	// ignored). Empty, with an empty HostRegexp, matches any host.
	Host string `yaml:"host,omitempty"`
	// HostRegexp matches the request host (without port) with a regexp.
	HostRegexp string `yaml:"hostRegexp,omitempty"`
	// Paths are tried in order.
	Paths []Path `yaml:"paths,omitempty"`
}

// Path matches the request path and method and names the pipeline that
// handles the request. At most one of Path, PathPrefix and PathRegexp may be
// set; none matches every path.
type Path struct {
	Path       string   `yaml:"path,omitempty"`
	PathPrefix string   `yaml:"pathPrefix,omitempty"`
	PathRegexp string   `yaml:"pathRegexp,omitempty"`
	Methods    []string `yaml:"methods,omitempty"`
	// Backend is the name of the pipeline that handles matching requests.
	Backend string `yaml:"backend"`
}

// SetDefaults sets KeepAlive.
func (s *Spec) SetDefaults() { s.KeepAlive = true }

// Validate checks the spec; errors name the field.
func (s *Spec) Validate() error {
	if s.HTTPS {
		return pipeline.FieldErr("https", errors.New("TLS serving is not supported yet; set https: false"))
	}
	if s.Address != "" && net.ParseIP(s.Address) == nil {
		return pipeline.FieldErr("address", fmt.Errorf("%q is not an IP address", s.Address))
	}
	for i, r := range s.Rules {
		rf := "rules[" + strconv.Itoa(i) + "]"
		if r.Host != "" && r.HostRegexp != "" {
			return pipeline.FieldErr(rf, errors.New("set host or hostRegexp, not both"))
		}
		if r.HostRegexp != "" {
			if _, err := regexp.Compile(r.HostRegexp); err != nil {
				return pipeline.FieldErr(rf+".hostRegexp", err)
			}
		}
		for j, p := range r.Paths {
			pf := rf + ".paths[" + strconv.Itoa(j) + "]"
			n := 0
			for _, v := range []string{p.Path, p.PathPrefix, p.PathRegexp} {
				if v != "" {
					n++
				}
			}
			if n > 1 {
				return pipeline.FieldErr(pf, errors.New("set at most one of path, pathPrefix and pathRegexp"))
			}
			if p.Path != "" && !strings.HasPrefix(p.Path, "/") {
				return pipeline.FieldErr(pf+".path", errors.New("must start with /"))
			}
			if p.PathPrefix != "" && !strings.HasPrefix(p.PathPrefix, "/") {
				return pipeline.FieldErr(pf+".pathPrefix", errors.New("must start with /"))
			}
			if p.PathRegexp != "" {
				if _, err := regexp.Compile(p.PathRegexp); err != nil {
					return pipeline.FieldErr(pf+".pathRegexp", err)
				}
			}
			for k, m := range p.Methods {
				if !validMethod(m) {
					return pipeline.FieldErr(pf+".methods["+strconv.Itoa(k)+"]", fmt.Errorf("%q is not an HTTP method", m))
				}
			}
			if p.Backend == "" {
				return pipeline.FieldErr(pf+".backend", errors.New("a path needs a backend pipeline"))
			}
		}
	}
	return nil
}

// ListenAddress returns the host:port the spec binds.
func (s *Spec) ListenAddress() string {
	return net.JoinHostPort(s.Address, strconv.Itoa(int(s.Port)))
}

func validMethod(m string) bool {
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
