package discovery_test

import (
	"context"
	"fmt"

	"github.com/sluicegw/sluice/mesh/discovery"
	"github.com/sluicegw/sluice/pipeline"
)

// staticBackend is the smallest Backend: a fixed list.
type staticBackend struct{}

func (staticBackend) Fetch(_ context.Context, services []string) (map[string][]pipeline.ServiceInstance, error) {
	out := map[string][]pipeline.ServiceInstance{}
	for _, s := range services {
		out[s] = []pipeline.ServiceInstance{{ID: s + "-1", Service: s, Address: "10.0.0.7", Port: 8080, Healthy: true}}
	}
	return out, nil
}

// A backend of one's own becomes a registry object: Watch a service, Run
// syncs it, and the watcher hears of the new instances.
func ExampleNewRegistry() {
	r := discovery.NewRegistry(staticBackend{}, discovery.Options{Kind: "StaticRegistry", Name: "static"})
	synced := make(chan struct{}, 1)
	stop := r.Watch("orders", func() { synced <- struct{}{} })
	defer stop()

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); r.Run(ctx) }()
	<-synced
	cancel()
	<-done

	inst, err := r.Instances("orders")
	fmt.Println(inst[0].ID, inst[0].URL(), err)
	// Output: orders-1 http://10.0.0.7:8080 <nil>
}
