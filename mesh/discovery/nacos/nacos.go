// Package nacos is the NacosServiceRegistry object kind: service
// instances from a Nacos server's open API, polled.
//
// A pool's serviceName is the Nacos service name. Each host of GET
// <contextPath>/v1/ns/instance/list?serviceName=…&namespaceId=…&groupName=…
// is an instance: its instanceId, ip, port, metadata (the key "scheme"
// gives https; "tags", comma-separated, the tags) and weight, a float
// Nacos keeps, taken ×100 as the integer weight (1.0 → 100); healthy while
// Nacos says it is healthy and enabled. With a username, the registry logs
// in (POST <contextPath>/v1/auth/login) and sends the access token, logging
// in again when it expires or is refused.
//
//	kind: NacosServiceRegistry
//	name: nacos
//	servers:
//	- {scheme: http, ipAddr: 127.0.0.1, port: 8848, contextPath: /nacos}
//	namespace: public        # optional
//	group: DEFAULT_GROUP     # optional
//	username: nacos          # optional
//	password: nacos
//	syncInterval: 500ms
//
// Register the kind with sluice.WithObjectKinds(nacos.Kind).
package nacos

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/sluicegw/sluice"
	"github.com/sluicegw/sluice/mesh/discovery"
	"github.com/sluicegw/sluice/pipeline"
)

// KindName is the kind's name in specs.
const KindName = "NacosServiceRegistry"

// DefaultSyncInterval is the time between polls when syncInterval is 0.
// Half a second keeps a change within a second of reaching the pools.
const DefaultSyncInterval = 500 * time.Millisecond

// maxBody bounds a response read from Nacos.
const maxBody = 16 << 20

// Spec is the NacosServiceRegistry configuration, with Easegress's field
// names (servers with scheme, ipAddr, port and contextPath; namespace;
// username; password; syncInterval; timeout) and more.
type Spec struct {
	// Servers are the Nacos servers, tried in turn; at least one.
	Servers []ServerSpec `yaml:"servers"`
	// Namespace is the namespace ID; empty means the public one.
	Namespace string `yaml:"namespace,omitempty"`
	// Group is the services' group; empty means Nacos's DEFAULT_GROUP.
	Group string `yaml:"group,omitempty"`
	// Username and Password log in to Nacos; empty means no auth.
	Username string `yaml:"username,omitempty"`
	Password string `yaml:"password,omitempty"`
	// TLS configures https servers; nil means the system roots.
	TLS *discovery.TLSSpec `yaml:"tls,omitempty"`
	// SyncInterval is the time between polls. 0 means
	// DefaultSyncInterval (500ms).
	SyncInterval time.Duration `yaml:"syncInterval,omitempty"`
	// Timeout bounds each poll. 0 means 5s.
	Timeout time.Duration `yaml:"timeout,omitempty"`
}

// ServerSpec is one Nacos server.
type ServerSpec struct {
	// Scheme is http (the default when empty) or https.
	Scheme string `yaml:"scheme,omitempty"`
	// IPAddr is the server's host. Required.
	IPAddr string `yaml:"ipAddr"`
	// Port is the server's port. Required.
	Port int `yaml:"port"`
	// ContextPath is the API's path prefix; empty means /nacos.
	ContextPath string `yaml:"contextPath,omitempty"`
}

// Validate checks s; errors name the field.
func (s *Spec) Validate() error {
	if len(s.Servers) == 0 {
		return pipeline.FieldErr("servers", fmt.Errorf("%w: at least one server is required", discovery.ErrBadSpec))
	}
	for i, sv := range s.Servers {
		f := fmt.Sprintf("servers[%d]", i)
		switch {
		case sv.Scheme != "" && sv.Scheme != "http" && sv.Scheme != "https":
			return pipeline.FieldErr(f+".scheme", fmt.Errorf("%w: %q (want http or https)", discovery.ErrBadSpec, sv.Scheme))
		case sv.IPAddr == "" || strings.ContainsAny(sv.IPAddr, "/?#@ "):
			return pipeline.FieldErr(f+".ipAddr", fmt.Errorf("%w: %q is not a host", discovery.ErrBadSpec, sv.IPAddr))
		case sv.Port < 1 || sv.Port > 65535:
			return pipeline.FieldErr(f+".port", fmt.Errorf("%w: %d is not in 1..65535", discovery.ErrBadSpec, sv.Port))
		case sv.ContextPath != "" && !strings.HasPrefix(sv.ContextPath, "/"):
			return pipeline.FieldErr(f+".contextPath", fmt.Errorf("%w: %q must start with /", discovery.ErrBadSpec, sv.ContextPath))
		}
	}
	if (s.Username == "") != (s.Password == "") {
		return pipeline.FieldErr("username", fmt.Errorf("%w: username and password go together", discovery.ErrBadSpec))
	}
	if s.TLS != nil {
		if err := s.TLS.Validate("tls"); err != nil {
			return err
		}
	}
	return discovery.CheckDurations(s.SyncInterval, s.Timeout)
}

// Kind is the NacosServiceRegistry object kind.
var Kind = sluice.DefineObject(KindName, sluice.CategorySystem, build).
	WithDescription("service instances from a Nacos server's open API, polled")

func build(env sluice.Env, spec *Spec) (sluice.Object, error) {
	hc, err := discovery.HTTPClient(spec.TLS, "tls", 0)
	if err != nil {
		return nil, err
	}
	interval := spec.SyncInterval
	if interval == 0 {
		interval = DefaultSyncInterval
	}
	b := &backend{spec: *spec, client: hc}
	for _, sv := range spec.Servers {
		scheme, cp := sv.Scheme, sv.ContextPath
		if scheme == "" {
			scheme = "http"
		}
		if cp == "" {
			cp = "/nacos"
		}
		b.bases = append(b.bases, scheme+"://"+net.JoinHostPort(sv.IPAddr, strconv.Itoa(sv.Port))+strings.TrimSuffix(cp, "/"))
	}
	return discovery.NewRegistry(b, discovery.Options{
		Kind: KindName, Name: env.Name, Logger: env.Logger, Clock: env.Clock,
		SyncInterval: interval, Timeout: spec.Timeout,
		Close: func() error { hc.CloseIdleConnections(); return nil },
	}), nil
}

// backend polls the servers; its fields after bases are used by the
// registry's Run goroutine only.
type backend struct {
	spec   Spec
	client *http.Client
	bases  []string

	token   string
	expires time.Time
}

// errDenied is a 401 or 403 from Nacos: the token is refused.
var errDenied = errors.New("nacos refused the credentials")

// Fetch polls each service.
func (b *backend) Fetch(ctx context.Context, services []string) (map[string][]pipeline.ServiceInstance, error) {
	out := map[string][]pipeline.ServiceInstance{}
	for _, svc := range services {
		inst, err := b.list(ctx, svc)
		if errors.Is(err, errDenied) && b.spec.Username != "" {
			b.token = "" // log in again
			inst, err = b.list(ctx, svc)
		}
		if err != nil {
			return nil, err
		}
		out[svc] = inst
	}
	return out, nil
}

type hostInfo struct {
	InstanceID string            `json:"instanceId"`
	IP         string            `json:"ip"`
	Port       int               `json:"port"`
	Weight     float64           `json:"weight"`
	Healthy    bool              `json:"healthy"`
	Enabled    bool              `json:"enabled"`
	Metadata   map[string]string `json:"metadata"`
}

func (b *backend) list(ctx context.Context, svc string) ([]pipeline.ServiceInstance, error) {
	if err := b.login(ctx); err != nil {
		return nil, err
	}
	q := url.Values{"serviceName": {svc}, "healthyOnly": {"false"}}
	if b.spec.Namespace != "" {
		q.Set("namespaceId", b.spec.Namespace)
	}
	if b.spec.Group != "" {
		q.Set("groupName", b.spec.Group)
	}
	if b.token != "" {
		q.Set("accessToken", b.token)
	}
	var res struct {
		Hosts []hostInfo `json:"hosts"`
	}
	if err := b.do(ctx, http.MethodGet, "/v1/ns/instance/list?"+q.Encode(), nil, &res); err != nil {
		return nil, err
	}
	var out []pipeline.ServiceInstance
	for _, h := range res.Hosts {
		inst := pipeline.ServiceInstance{
			ID:       h.InstanceID,
			Service:  svc,
			Address:  h.IP,
			Port:     h.Port,
			Scheme:   strings.ToLower(h.Metadata["scheme"]),
			Weight:   int(math.Round(h.Weight * 100)),
			Metadata: h.Metadata,
			Healthy:  h.Healthy && h.Enabled,
		}
		if t := h.Metadata["tags"]; t != "" {
			for tag := range strings.SplitSeq(t, ",") {
				if tag = strings.TrimSpace(tag); tag != "" {
					inst.Tags = append(inst.Tags, tag)
				}
			}
		}
		if inst.ID == "" {
			inst.ID = net.JoinHostPort(h.IP, strconv.Itoa(h.Port))
		}
		if discovery.CheckInstance(inst) == nil {
			out = append(out, inst)
		}
	}
	return out, nil
}

// login gets an access token when the spec has a username and the token
// is missing or about to expire.
func (b *backend) login(ctx context.Context) error {
	if b.spec.Username == "" || (b.token != "" && time.Now().Before(b.expires)) {
		return nil
	}
	form := url.Values{"username": {b.spec.Username}, "password": {b.spec.Password}}
	var res struct {
		AccessToken string `json:"accessToken"`
		TokenTTL    int64  `json:"tokenTtl"`
	}
	if err := b.do(ctx, http.MethodPost, "/v1/auth/login", form, &res); err != nil {
		return fmt.Errorf("nacos login: %w", err)
	}
	if res.AccessToken == "" {
		return errors.New("nacos login: no access token")
	}
	ttl := time.Duration(res.TokenTTL) * time.Second
	if ttl <= 0 {
		ttl = time.Hour
	}
	b.token, b.expires = res.AccessToken, time.Now().Add(ttl*9/10)
	return nil
}

// do sends a request to the first server that answers and decodes its
// JSON answer into v.
func (b *backend) do(ctx context.Context, method, path string, form url.Values, v any) error {
	var errs []error
	for _, base := range b.bases {
		var body io.Reader
		if form != nil {
			body = strings.NewReader(form.Encode())
		}
		req, err := http.NewRequestWithContext(ctx, method, base+path, body)
		if err != nil {
			return err
		}
		if form != nil {
			req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		}
		resp, err := b.client.Do(req)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		data, err := io.ReadAll(io.LimitReader(resp.Body, maxBody))
		resp.Body.Close()
		switch {
		case err != nil:
			errs = append(errs, err)
			continue
		case resp.StatusCode == http.StatusUnauthorized || resp.StatusCode == http.StatusForbidden:
			return errDenied
		case resp.StatusCode != http.StatusOK:
			errs = append(errs, fmt.Errorf("nacos %s: status %d", base, resp.StatusCode))
			continue
		}
		return json.Unmarshal(data, v)
	}
	return errors.Join(errs...)
}

var _ discovery.Backend = (*backend)(nil)
