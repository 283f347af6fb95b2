// Command customcontroller runs a gateway with an object kind of its own:
// the StatusInLocalController of Easegress's developer guide, from package
// statusinlocal, which writes the status of every object to a local file.
//
// Extending Sluice with a controller takes three steps, all visible here:
//
//  1. write the kind: a spec struct and sluice.DefineObject, building an
//     object with Run(ctx) and Close (statusinlocal.Kind);
//  2. register it with the gateway you build: sluice.WithObjectKinds;
//  3. apply it like any object, in YAML or Go.
//
// The gateway starts Run after the objects it depends on, cancels it on
// update, delete and Shutdown, and waits for it to return; the controller
// starts no goroutine of its own and needs no done channel.
//
// This program also registers the HeaderCounter filter of the customfilter
// example, so that the status file has counts to show:
//
//	$ go run ./examples/customcontroller
//	$ curl -H 'Cookie: id=1' http://127.0.0.1:10082/
//	$ cat running_status.yaml     # rewritten every 5 seconds
//
// It runs until interrupted (Ctrl-C).
package main

import (
	"context"
	"log"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"time"

	"github.com/sluicegw/sluice"
	"github.com/sluicegw/sluice/examples/customcontroller/statusinlocal"
	"github.com/sluicegw/sluice/examples/customfilter/headercounter"
)

// config is an HTTP server and a pipeline to report on, and the controller
// that reports.
const config = `
kind: HTTPServer
name: server
address: 127.0.0.1
port: 10082
rules:
  - paths:
    - pathPrefix: /
      backend: counted
---
kind: Pipeline
name: counted
flow:
  - filter: headerCounter
    jumpIf: { invalidHeader: END }
  - filter: mock
filters:
  - name: headerCounter
    kind: HeaderCounter
    headers: ['Cookie', 'Authorization']
  - name: mock
    kind: Mock
    rules:
      - body: counted
---
kind: StatusInLocalController
name: status-in-local
path: ./running_status.yaml
interval: 5s
`

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	logger := slog.New(slog.NewTextHandler(os.Stderr, nil))
	g, err := newGateway(config, sluice.WithLogger(logger))
	if err != nil {
		log.Fatal(err)
	}
	logger.Info("serving on 127.0.0.1:10082, writing ./running_status.yaml; Ctrl-C stops")
	if err := serve(ctx, g); err != nil {
		log.Fatal(err)
	}
}

// newGateway builds a gateway that knows the StatusInLocalController object
// kind and the HeaderCounter filter kind, with the objects of config.
func newGateway(config string, opts ...sluice.Option) (*sluice.Gateway, error) {
	opts = append(opts,
		sluice.WithObjectKinds(statusinlocal.Kind),
		sluice.WithFilterKinds(headercounter.Kind))
	return sluice.Load(strings.NewReader(config), opts...)
}

// serve starts g (which runs the controller), serves until ctx is done,
// then shuts g down (which stops the controller).
func serve(ctx context.Context, g *sluice.Gateway) error {
	shutdown := func() error {
		sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		return g.Shutdown(sctx)
	}
	if err := g.Start(ctx); err != nil {
		shutdown()
		return err
	}
	<-ctx.Done()
	return shutdown()
}
