package gate

import (
	"net/http"
	"strings"
)

// stripH2CUpgrade removes an HTTP/1.1 request's offer to upgrade to h2c
// (RFC 7540 §3.2, removed in RFC 9113): the "h2c" token of Upgrade, the
// HTTP2-Settings header and their names in Connection. The server does not
// take the upgrade, and a backend must not see it either, so the request
// is served as plain HTTP/1.1. Other upgrade tokens (websocket) stay.
func stripH2CUpgrade(h http.Header) {
	up, ok := h["Upgrade"]
	if !ok {
		return
	}
	var keep []string
	found := false
	for _, v := range up {
		for tok := range strings.SplitSeq(v, ",") {
			switch t := strings.TrimSpace(tok); {
			case t == "":
			case strings.EqualFold(t, "h2c"):
				found = true
			default:
				keep = append(keep, t)
			}
		}
	}
	if !found {
		return
	}
	h.Del("Http2-Settings")
	dropUpgrade := len(keep) == 0
	if dropUpgrade {
		h.Del("Upgrade")
	} else {
		h["Upgrade"] = []string{strings.Join(keep, ", ")}
	}
	var conn []string
	for _, v := range h["Connection"] {
		for tok := range strings.SplitSeq(v, ",") {
			t := strings.TrimSpace(tok)
			if t == "" || strings.EqualFold(t, "http2-settings") || (dropUpgrade && strings.EqualFold(t, "upgrade")) {
				continue
			}
			conn = append(conn, t)
		}
	}
	if len(conn) == 0 {
		h.Del("Connection")
	} else {
		h["Connection"] = []string{strings.Join(conn, ", ")}
	}
}
