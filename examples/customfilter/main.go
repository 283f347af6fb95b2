// Command customfilter runs a gateway with a filter kind of its own: the
// HeaderCounter of Easegress's developer guide, from package headercounter.
//
// Extending Sluice with a filter takes three steps, all visible here:
//
//  1. write the kind: a spec struct and pipeline.Define (headercounter.Kind);
//  2. register it with the gateway you build: sluice.WithFilterKinds;
//  3. use it in a pipeline's YAML like any built-in kind.
//
// There is no global registry, no init() and no rebuild of the gateway
// itself: the kind is a value handed to one gateway.
//
// The gateway listens on 127.0.0.1:10081 until interrupted (Ctrl-C):
//
//	$ go run ./examples/customfilter
//	$ curl -i http://127.0.0.1:10081/                    # 400: needs Cookie or Authorization
//	$ curl -i -H 'Cookie: id=1' http://127.0.0.1:10081/  # 200 counted
//
// Requests that pass the counter are answered by the built-in Mock filter.
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
	"github.com/sluicegw/sluice/examples/customfilter/headercounter"
)

// config routes every request to a pipeline that counts the Cookie and
// Authorization headers, rejects requests without either, and answers the
// others with 200 "counted".
const config = `
kind: HTTPServer
name: server
address: 127.0.0.1
port: 10081
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
      - code: 200
        body: counted
`

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	logger := slog.New(slog.NewTextHandler(os.Stderr, nil))
	g, err := newGateway(config, sluice.WithLogger(logger))
	if err != nil {
		log.Fatal(err)
	}
	logger.Info("serving on 127.0.0.1:10081; Ctrl-C stops")
	if err := serve(ctx, g); err != nil {
		log.Fatal(err)
	}
}

// newGateway builds a gateway that knows the HeaderCounter filter kind
// besides the built-in ones, with the objects of config.
func newGateway(config string, opts ...sluice.Option) (*sluice.Gateway, error) {
	opts = append(opts, sluice.WithFilterKinds(headercounter.Kind))
	return sluice.Load(strings.NewReader(config), opts...)
}

// serve starts g, serves until ctx is done, then shuts g down.
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
