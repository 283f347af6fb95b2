// Command embed shows Sluice as a library: an existing net/http program
// mounts a gateway's routes under /api/ next to its own, with no second
// listener and no separate gateway process.
//
// sluice.Load builds the objects of a YAML config; Handler returns the
// router of one of its HTTPServers, which the program mounts in its own
// mux like any http.Handler. The gateway is never started: the server's
// port is unused, since the program's own server does the listening.
// Requests under /api/ go through the gateway's routing and pipelines
// (here the built-in Mock filter); everything else stays the program's.
//
//	$ go run ./examples/embed
//	$ curl http://127.0.0.1:8080/           # the program's own page
//	$ curl http://127.0.0.1:8080/api/hello  # answered by the gateway
package main

import (
	"io"
	"log"
	"net/http"
	"strings"

	"github.com/sluicegw/sluice"
)

// config is an HTTPServer "api", whose rule sends /api/ to a pipeline
// that answers with a canned JSON response.
const config = `
kind: HTTPServer
name: api
rules:
  - paths:
    - pathPrefix: /api/
      methods: [GET]
      backend: hello
---
kind: Pipeline
name: hello
filters:
  - name: mock
    kind: Mock
    rules:
      - headers: { Content-Type: application/json }
        body: '{"hello": "from the gateway"}'
`

func main() {
	h, err := app()
	if err != nil {
		log.Fatal(err)
	}
	log.Print("serving http://127.0.0.1:8080/ and http://127.0.0.1:8080/api/hello")
	log.Fatal(http.ListenAndServe("127.0.0.1:8080", h))
}

// app is the program's router: its own routes, and the gateway under /api/.
func app() (http.Handler, error) {
	g, err := sluice.Load(strings.NewReader(config))
	if err != nil {
		return nil, err
	}
	api, err := g.Handler("api")
	if err != nil {
		return nil, err
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /{$}", home) // the program's own route
	mux.Handle("/api/", api)         // everything under /api/ goes through the gateway
	return mux, nil
}

// home is the program's own page, served without the gateway.
func home(w http.ResponseWriter, _ *http.Request) {
	io.WriteString(w, "the app's own page\n")
}
