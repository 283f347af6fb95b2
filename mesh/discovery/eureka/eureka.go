// Package eureka is the EurekaServiceRegistry object kind: service
// instances from a Eureka server's REST API, polled.
//
// A pool's serviceName is the Eureka application name (case-insensitive).
// Each instance of GET <endpoint>/apps/<APP> is an instance: its instanceId,
// ipAddr (hostName when empty), the secure port with https when that port
// is enabled, the port with http otherwise; healthy while its status is
// UP. Its metadata is kept; the metadata keys "weight" (an integer, 1 when
// absent) and "tags" (comma-separated) give the weight and tags.
//
//	kind: EurekaServiceRegistry
//	name: eureka
//	endpoints: [http://127.0.0.1:8761/eureka]
//	username: sluice          # basic auth, optional
//	password: secret
//	syncInterval: 500ms
//
// Register the kind with sluice.WithObjectKinds(eureka.Kind).
package eureka

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
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
const KindName = "EurekaServiceRegistry"

// DefaultSyncInterval is the time between polls when syncInterval is 0.
// Half a second keeps a change within a second of reaching the pools.
const DefaultSyncInterval = 500 * time.Millisecond

// maxBody bounds a response read from Eureka.
const maxBody = 16 << 20

// Spec is the EurekaServiceRegistry configuration, with Easegress's field
// names (endpoints, syncInterval) and more.
type Spec struct {
	// Endpoints are the Eureka servers' base URLs (up to /eureka), tried
	// in turn; at least one.
	Endpoints []string `yaml:"endpoints"`
	// Username and Password are sent with basic auth; empty means none.
	Username string `yaml:"username,omitempty"`
	Password string `yaml:"password,omitempty"`
	// TLS configures https endpoints; nil means the system roots.
	TLS *discovery.TLSSpec `yaml:"tls,omitempty"`
	// SyncInterval is the time between polls. 0 means
	// DefaultSyncInterval (500ms).
	SyncInterval time.Duration `yaml:"syncInterval,omitempty"`
	// Timeout bounds each poll. 0 means 5s.
	Timeout time.Duration `yaml:"timeout,omitempty"`
}

// Validate checks s; errors name the field.
func (s *Spec) Validate() error {
	if len(s.Endpoints) == 0 {
		return pipeline.FieldErr("endpoints", fmt.Errorf("%w: at least one endpoint is required", discovery.ErrBadSpec))
	}
	for i, e := range s.Endpoints {
		u, err := url.Parse(e)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return pipeline.FieldErr(fmt.Sprintf("endpoints[%d]", i), fmt.Errorf("%w: %q is not an http(s) URL", discovery.ErrBadSpec, e))
		}
	}
	if s.Password != "" && s.Username == "" {
		return pipeline.FieldErr("username", fmt.Errorf("%w: required with password", discovery.ErrBadSpec))
	}
	if s.TLS != nil {
		if err := s.TLS.Validate("tls"); err != nil {
			return err
		}
	}
	return discovery.CheckDurations(s.SyncInterval, s.Timeout)
}

// Kind is the EurekaServiceRegistry object kind.
var Kind = sluice.DefineObject(KindName, sluice.CategorySystem, build).
	WithDescription("service instances from a Eureka server's REST API, polled")

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
	return discovery.NewRegistry(b, discovery.Options{
		Kind: KindName, Name: env.Name, Logger: env.Logger, Clock: env.Clock,
		SyncInterval: interval, Timeout: spec.Timeout,
		Close: func() error { hc.CloseIdleConnections(); return nil },
	}), nil
}

type backend struct {
	spec   Spec
	client *http.Client
}

// errNotFound is get's error for a 404: the application is not known.
var errNotFound = errors.New("not found")

// Fetch polls each application.
func (b *backend) Fetch(ctx context.Context, services []string) (map[string][]pipeline.ServiceInstance, error) {
	out := map[string][]pipeline.ServiceInstance{}
	for _, svc := range services {
		var app struct {
			Application struct {
				Instance json.RawMessage `json:"instance"`
			} `json:"application"`
		}
		err := b.get(ctx, "/apps/"+url.PathEscape(strings.ToUpper(svc)), &app)
		if errors.Is(err, errNotFound) {
			continue
		}
		if err != nil {
			return nil, err
		}
		insts, err := decodeInstances(app.Application.Instance)
		if err != nil {
			return nil, fmt.Errorf("eureka application %s: %w", svc, err)
		}
		for _, in := range insts {
			if inst, ok := in.instance(svc); ok {
				out[svc] = append(out[svc], inst)
			}
		}
	}
	return out, nil
}

// get fetches path from the first endpoint that answers.
func (b *backend) get(ctx context.Context, path string, v any) error {
	var errs []error
	for _, ep := range b.spec.Endpoints {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, strings.TrimSuffix(ep, "/")+path, nil)
		if err != nil {
			return err
		}
		req.Header.Set("Accept", "application/json")
		if b.spec.Username != "" {
			req.SetBasicAuth(b.spec.Username, b.spec.Password)
		}
		resp, err := b.client.Do(req)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		body, err := io.ReadAll(io.LimitReader(resp.Body, maxBody))
		resp.Body.Close()
		switch {
		case err != nil:
			errs = append(errs, err)
			continue
		case resp.StatusCode == http.StatusNotFound:
			return errNotFound
		case resp.StatusCode != http.StatusOK:
			errs = append(errs, fmt.Errorf("eureka %s: status %d", ep, resp.StatusCode))
			continue
		}
		return json.Unmarshal(body, v)
	}
	return errors.Join(errs...)
}

// instanceInfo is Eureka's JSON of one instance.
type instanceInfo struct {
	InstanceID string            `json:"instanceId"`
	HostName   string            `json:"hostName"`
	IPAddr     string            `json:"ipAddr"`
	Status     string            `json:"status"`
	Port       port              `json:"port"`
	SecurePort port              `json:"securePort"`
	Metadata   map[string]string `json:"metadata"`
}

// port is Eureka's {"$": 8080, "@enabled": "true"}.
type port struct {
	Port    int    `json:"$"`
	Enabled string `json:"@enabled"`
}

// decodeInstances accepts a list of instances or, as some Eureka versions
// write a single one, an object.
func decodeInstances(raw json.RawMessage) ([]instanceInfo, error) {
	if len(raw) == 0 || string(raw) == "null" {
		return nil, nil
	}
	var list []instanceInfo
	if raw[0] == '[' {
		err := json.Unmarshal(raw, &list)
		return list, err
	}
	var one instanceInfo
	err := json.Unmarshal(raw, &one)
	return []instanceInfo{one}, err
}

func (in instanceInfo) instance(svc string) (pipeline.ServiceInstance, bool) {
	inst := pipeline.ServiceInstance{
		ID:       in.InstanceID,
		Service:  svc,
		Address:  in.IPAddr,
		Scheme:   "http",
		Port:     in.Port.Port,
		Weight:   1,
		Metadata: in.Metadata,
		Healthy:  strings.EqualFold(in.Status, "UP"),
	}
	if inst.Address == "" {
		inst.Address = in.HostName
	}
	if in.SecurePort.Enabled == "true" {
		inst.Scheme, inst.Port = "https", in.SecurePort.Port
	}
	if w, err := strconv.Atoi(in.Metadata["weight"]); err == nil && w >= 0 {
		inst.Weight = w
	}
	if t := in.Metadata["tags"]; t != "" {
		for tag := range strings.SplitSeq(t, ",") {
			if tag = strings.TrimSpace(tag); tag != "" {
				inst.Tags = append(inst.Tags, tag)
			}
		}
	}
	if inst.ID == "" {
		inst.ID = fmt.Sprintf("%s:%d", inst.Address, inst.Port)
	}
	return inst, discovery.CheckInstance(inst) == nil
}

var _ discovery.Backend = (*backend)(nil)
