package main

import (
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net/http"
	"slices"
	"strings"
)

// mirrorMaxBody is how much of a request body the mirror echoes.
const mirrorMaxBody = 1 << 20

// mirrorHandler answers every request with 200 and a text description of
// it, like Easegress's mirror backend:
//
//	Your Request
//	==============
//	Method: POST
//	URL   : /pipeline
//	Proto : HTTP/1.1
//	Host  : 127.0.0.1:9095
//	Header:
//	  Content-Type: application/x-www-form-urlencoded
//	Body  : hello
//
// Headers are sorted, one line per value; the body is cut after
// mirrorMaxBody bytes.
func mirrorHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(io.LimitReader(r.Body, mirrorMaxBody+1))
		var b strings.Builder
		b.WriteString("Your Request\n==============\n")
		fmt.Fprintf(&b, "Method: %s\n", r.Method)
		fmt.Fprintf(&b, "URL   : %s\n", r.URL.RequestURI())
		fmt.Fprintf(&b, "Proto : %s\n", r.Proto)
		fmt.Fprintf(&b, "Host  : %s\n", r.Host)
		b.WriteString("Header:\n")
		for _, k := range slices.Sorted(maps.Keys(r.Header)) {
			for _, v := range r.Header[k] {
				fmt.Fprintf(&b, "  %s: %s\n", k, v)
			}
		}
		b.WriteString("Body  : ")
		switch {
		case err != nil:
			fmt.Fprintf(&b, "<read failed: %v>", err)
		case len(body) > mirrorMaxBody:
			b.Write(body[:mirrorMaxBody])
			fmt.Fprintf(&b, "\n<truncated after %d bytes>", mirrorMaxBody)
		default:
			b.Write(body)
		}
		b.WriteByte('\n')

		h := w.Header()
		h.Set("Content-Type", "text/plain; charset=utf-8")
		h.Set("X-Content-Type-Options", "nosniff") // the body echoes what the client sent
		w.WriteHeader(http.StatusOK)
		io.WriteString(w, b.String())
	})
}

func newMirrorServer(log *slog.Logger) *http.Server {
	return newHTTPServer(mirrorHandler(), log)
}
