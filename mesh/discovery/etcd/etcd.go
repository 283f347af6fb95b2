// Package etcd is the EtcdServiceRegistry object kind: service instances
// kept as keys in etcd, watched for changes.
//
// Layout: each instance is a JSON document (discovery.Record) under
// <prefix><service>/<instanceID>:
//
//	/services/orders/orders-1 → {"address": "10.0.0.7", "port": 8080, "tags": ["v2"], "weight": 10}
//
// The registry lists the keys of the services the gateway's pools watch and
// then watches the prefix, so that a put or delete reaches the pools at
// once; it checks the keys again every syncInterval, which is how it notices
// that etcd has become unreachable (the pools then keep the last known
// instances, reported stale).
//
//	kind: EtcdServiceRegistry
//	name: etcd-registry
//	endpoints: [http://127.0.0.1:2379]
//	prefix: /services/
//	username: sluice          # optional
//	password: secret
//	tls: {caFile: /etc/sluice/etcd-ca.pem}   # for https endpoints
//
// Register the kind with sluice.WithObjectKinds(etcd.Kind).
package etcd

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/sluicegw/sluice"
	"github.com/sluicegw/sluice/mesh/discovery"
	"github.com/sluicegw/sluice/pipeline"
)

// KindName is the kind's name in specs.
const KindName = "EtcdServiceRegistry"

// DefaultPrefix is the key prefix when prefix is empty.
const DefaultPrefix = "/services/"

// Spec is the EtcdServiceRegistry configuration, with Easegress's field
// names (endpoints, prefix) and more.
type Spec struct {
	// Endpoints are the etcd client URLs; at least one.
	Endpoints []string `yaml:"endpoints"`
	// Prefix is where the services' keys live; it ends with "/". Empty
	// means DefaultPrefix.
	Prefix string `yaml:"prefix,omitempty"`
	// Username and Password authenticate to etcd; empty means no auth.
	Username string `yaml:"username,omitempty"`
	Password string `yaml:"password,omitempty"`
	// TLS configures https endpoints; nil means the system roots.
	TLS *discovery.TLSSpec `yaml:"tls,omitempty"`
	// SyncInterval is how often the keys are listed again besides the
	// watch, and the pause before a failed sync is retried. 0 means 10s.
	SyncInterval time.Duration `yaml:"syncInterval,omitempty"`
	// Timeout bounds each listing and connecting. 0 means 5s.
	Timeout time.Duration `yaml:"timeout,omitempty"`
}

// Validate checks s; errors name the field.
func (s *Spec) Validate() error {
	if len(s.Endpoints) == 0 {
		return pipeline.FieldErr("endpoints", fmt.Errorf("%w: at least one endpoint is required", discovery.ErrBadSpec))
	}
	for i, e := range s.Endpoints {
		if e == "" {
			return pipeline.FieldErr(fmt.Sprintf("endpoints[%d]", i), fmt.Errorf("%w: empty endpoint", discovery.ErrBadSpec))
		}
	}
	if s.Prefix != "" && (!strings.HasPrefix(s.Prefix, "/") || !strings.HasSuffix(s.Prefix, "/")) {
		return pipeline.FieldErr("prefix", fmt.Errorf("%w: %q must start and end with /", discovery.ErrBadSpec, s.Prefix))
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

// Kind is the EtcdServiceRegistry object kind.
var Kind = sluice.DefineObject(KindName, sluice.CategorySystem, build).
	WithDescription("service instances kept as JSON under a key prefix in etcd, watched")

func build(env sluice.Env, spec *Spec) (sluice.Object, error) {
	cfg, err := spec.TLS.Config("tls")
	if err != nil {
		return nil, err
	}
	b := &backend{spec: *spec}
	if b.spec.Prefix == "" {
		b.spec.Prefix = DefaultPrefix
	}
	timeout := spec.Timeout
	if timeout <= 0 {
		timeout = 5 * time.Second
	}
	b.cfg = clientv3.Config{
		Endpoints:            spec.Endpoints,
		Username:             spec.Username,
		Password:             spec.Password,
		TLS:                  cfg,
		DialTimeout:          timeout,
		DialKeepAliveTime:    10 * time.Second,
		DialKeepAliveTimeout: timeout,
		Logger:               zap.NewNop(),
	}
	return discovery.NewRegistry(b, discovery.Options{
		Kind: KindName, Name: env.Name, Logger: env.Logger, Clock: env.Clock,
		SyncInterval: spec.SyncInterval, Timeout: spec.Timeout,
		Close: b.close,
	}), nil
}

// backend lists and watches the keys. The client is made by the first
// Fetch (Build must not start goroutines), on the registry's goroutine.
type backend struct {
	spec Spec
	cfg  clientv3.Config

	mu     sync.Mutex // guards client against close
	client *clientv3.Client
	closed bool
	rev    int64 // the revision of the last Fetch; used by the Run goroutine only
}

func (b *backend) getClient() (*clientv3.Client, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return nil, sluice.ErrClosed
	}
	if b.client == nil {
		c, err := clientv3.New(b.cfg)
		if err != nil {
			return nil, err
		}
		b.client = c
	}
	return b.client, nil
}

// Fetch lists the keys of each service.
func (b *backend) Fetch(ctx context.Context, services []string) (map[string][]pipeline.ServiceInstance, error) {
	c, err := b.getClient()
	if err != nil {
		return nil, err
	}
	out := map[string][]pipeline.ServiceInstance{}
	var rev int64
	for _, svc := range services {
		dir := b.spec.Prefix + svc + "/"
		resp, err := c.Get(ctx, dir, clientv3.WithPrefix())
		if err != nil {
			return nil, err
		}
		rev = max(rev, resp.Header.Revision)
		for _, kv := range resp.Kvs {
			id := strings.TrimPrefix(string(kv.Key), dir)
			if id == "" || strings.Contains(id, "/") {
				continue // not an instance key
			}
			inst, err := discovery.ParseRecord(svc, id, kv.Value)
			if err != nil {
				continue // a bad record is not an instance; the others are
			}
			out[svc] = append(out[svc], inst)
		}
	}
	if len(services) == 0 {
		resp, err := c.Get(ctx, b.spec.Prefix, clientv3.WithPrefix(), clientv3.WithCountOnly())
		if err != nil {
			return nil, err
		}
		rev = resp.Header.Revision
	}
	b.rev = rev
	return out, nil
}

// Wait watches the prefix from the revision after the last Fetch.
func (b *backend) Wait(ctx context.Context, services []string) error {
	c, err := b.getClient()
	if err != nil {
		return err
	}
	wctx, cancel := context.WithCancel(clientv3.WithRequireLeader(ctx))
	defer cancel()
	for resp := range c.Watch(wctx, b.spec.Prefix, clientv3.WithPrefix(), clientv3.WithRev(b.rev+1)) {
		if err := resp.Err(); err != nil {
			return err
		}
		if len(resp.Events) > 0 {
			return nil
		}
	}
	if ctx.Err() != nil {
		return ctx.Err()
	}
	return fmt.Errorf("etcd watch closed")
}

func (b *backend) close() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.closed = true
	if b.client != nil {
		err := b.client.Close()
		b.client = nil
		return err
	}
	return nil
}

var (
	_ discovery.Backend = (*backend)(nil)
	_ discovery.Waiter  = (*backend)(nil)
)
