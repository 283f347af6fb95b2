package gate

import (
	"context"
	"io"
	"net/http"
	"testing"
	"time"
)

// CloseKeepAlives lets an idle keep-alive connection serve its next request,
// with Connection: close, instead of closing it under the client; it
// returns once no connection is left.
func TestCloseKeepAlives(t *testing.T) {
	s := serveGen(t, "port: 0\naddress: 127.0.0.1\nrules: [{paths: [{backend: p}]}]\n", nil, "ok")
	defer s.Close()
	tr := &http.Transport{}
	defer tr.CloseIdleConnections()
	c := &http.Client{Transport: tr}
	get := func() *http.Response {
		resp, err := c.Get("http://" + s.Addr() + "/")
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp
	}
	if resp := get(); resp.Close {
		t.Fatal("keep-alive off before CloseKeepAlives")
	}
	done := make(chan struct{})
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		s.CloseKeepAlives(ctx)
		close(done)
	}()
	select {
	case <-done:
		t.Fatal("returned with a keep-alive connection open")
	case <-time.After(100 * time.Millisecond):
	}
	// The idle connection serves the next request and then closes.
	if resp := get(); !resp.Close {
		t.Error("no Connection: close after CloseKeepAlives")
	}
	<-done
}
