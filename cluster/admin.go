package cluster

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/hashicorp/raft"

	"github.com/sluicegw/sluice"
)

// Paths of the cluster's admin API, under sluice.AdminPrefix.
const (
	pathJoin       = sluice.AdminPrefix + "/cluster/join"
	pathLeave      = sluice.AdminPrefix + "/cluster/leave"
	pathMembers    = sluice.AdminPrefix + "/cluster/members"
	pathCommit     = sluice.AdminPrefix + "/cluster/commit"
	pathReadIndex  = sluice.AdminPrefix + "/cluster/read-index"
	pathHeartbeat  = sluice.AdminPrefix + "/cluster/heartbeat"
	pathStatus     = sluice.AdminPrefix + "/status/members"
	clusterPrefix  = sluice.AdminPrefix + "/cluster/"
	headerAuth     = "Sluice-Cluster-Auth"
	headerToLeader = "Sluice-Cluster-To-Leader"
	maxClusterBody = 16 << 20
	maxClockSkew   = 5 * time.Minute
)

// AdminPaths are the path patterns AdminHandler serves; mount it on each
// next to the gateway's own admin API:
//
//	for _, p := range cluster.AdminPaths {
//		mux.Handle(p, node.AdminHandler())
//	}
//	mux.Handle("/", gateway.AdminHandler())
var AdminPaths = []string{clusterPrefix, pathStatus}

// AdminHandler returns the member's part of the admin API:
//
//	POST /apis/v2/cluster/join        add a member (body: Member); any member forwards to the leader
//	POST /apis/v2/cluster/leave       remove a member (body: {"id": ...}); forwarded to the leader
//	GET  /apis/v2/cluster/members     the members in this member's raft configuration
//	POST /apis/v2/cluster/commit      a forwarded write (leader only)
//	GET  /apis/v2/cluster/read-index  the leader's applied index after an empty entry (leader only)
//	POST /apis/v2/cluster/heartbeat   a member's status report (leader only)
//	GET  /apis/v2/status/members      every member's status as the leader last heard it
//
// Requests that change the cluster carry the "Sluice-Cluster-Auth"
// header, an HMAC-SHA256 with the cluster secret over the method, path,
// time and body (401 without it); if they come over TLS, the client's
// certificate must also verify (the server needs ClientCAs and at least
// tls.VerifyClientCertIfGiven). The read-only GETs also answer loopback
// clients and clients with a verified certificate. Errors are JSON
// {"code": N, "message": "..."} as in the gateway's admin API: 400 for a
// malformed body, 403/401 for a caller without credentials, 410 for a
// heartbeat from a removed member, 503 when this member is not the
// leader or knows none.
func (n *Node) AdminHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("POST "+pathJoin, n.signed(n.handleJoin))
	mux.HandleFunc("POST "+pathLeave, n.signed(n.handleLeave))
	mux.HandleFunc("GET "+pathMembers, n.reader(n.handleMembers))
	mux.HandleFunc("POST "+pathCommit, n.signed(n.handleCommit))
	mux.HandleFunc("GET "+pathReadIndex, n.signed(n.handleReadIndex))
	mux.HandleFunc("POST "+pathHeartbeat, n.signed(n.handleHeartbeat))
	mux.HandleFunc("GET "+pathStatus, n.reader(n.handleStatus))
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, http.StatusNotFound, "no such cluster endpoint: "+r.Method+" "+r.URL.Path)
	})
	return mux
}

// signed admits only requests with a valid cluster signature (and, over
// TLS, a verified client certificate) and hands over the body.
func (n *Node) signed(h func(http.ResponseWriter, *http.Request, []byte)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxClusterBody))
		if err != nil {
			var tooBig *http.MaxBytesError
			if errors.As(err, &tooBig) {
				writeError(w, http.StatusRequestEntityTooLarge, "request body too large")
				return
			}
			writeError(w, http.StatusBadRequest, "reading the request body: "+err.Error())
			return
		}
		if r.TLS != nil && len(r.TLS.VerifiedChains) == 0 {
			writeError(w, http.StatusForbidden, "a verified client certificate is required")
			return
		}
		if !n.verify(r, body, time.Now()) {
			writeError(w, http.StatusUnauthorized, "a valid "+headerAuth+" signature is required")
			return
		}
		h(w, r, body)
	}
}

// reader admits signed requests, loopback clients and clients with a
// verified certificate.
func (n *Node) reader(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		verified := r.TLS != nil && len(r.TLS.VerifiedChains) > 0
		if !verified && !loopback(r.RemoteAddr) && !n.verify(r, nil, time.Now()) {
			writeError(w, http.StatusForbidden, "the cluster status answers members, loopback clients and clients with a verified certificate")
			return
		}
		h(w, r)
	}
}

func loopback(remote string) bool {
	host, _, err := net.SplitHostPort(remote)
	if err != nil {
		return false
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// signature is HMAC-SHA256(secret, method \n path \n unix time \n sha256(body)).
func (n *Node) signature(method, path, ts string, body []byte) []byte {
	sum := sha256.Sum256(body)
	m := hmac.New(sha256.New, n.cfg.Secret)
	fmt.Fprintf(m, "%s\n%s\n%s\n%x", method, path, ts, sum)
	return m.Sum(nil)
}

func (n *Node) sign(req *http.Request, body []byte, now time.Time) {
	ts := strconv.FormatInt(now.Unix(), 10)
	req.Header.Set(headerAuth, ts+":"+hex.EncodeToString(n.signature(req.Method, req.URL.Path, ts, body)))
}

func (n *Node) verify(r *http.Request, body []byte, now time.Time) bool {
	ts, mac, ok := strings.Cut(r.Header.Get(headerAuth), ":")
	if !ok {
		return false
	}
	sec, err := strconv.ParseInt(ts, 10, 64)
	if err != nil {
		return false
	}
	if d := now.Sub(time.Unix(sec, 0)); d > maxClockSkew || d < -maxClockSkew {
		return false
	}
	got, err := hex.DecodeString(mac)
	if err != nil {
		return false
	}
	return hmac.Equal(got, n.signature(r.Method, r.URL.Path, ts, body))
}

// remoteError is an error answer from another member.
type remoteError struct {
	URL     string
	Code    int
	Message string
}

func (e *remoteError) Error() string {
	return fmt.Sprintf("%s answered %d: %s", e.URL, e.Code, e.Message)
}

// call sends a signed request to another member and decodes its JSON
// answer into out.
func (n *Node) call(ctx context.Context, base, method, path string, in, out any, toLeader bool) error {
	b, err := n.callRaw(ctx, base, method, path, in, toLeader)
	if err != nil || out == nil {
		return err
	}
	return json.Unmarshal(b, out)
}

func (n *Node) callRaw(ctx context.Context, base, method, path string, in any, toLeader bool) ([]byte, error) {
	var body []byte
	if in != nil {
		var err error
		if body, err = json.Marshal(in); err != nil {
			return nil, err
		}
	}
	req, err := http.NewRequestWithContext(ctx, method, base+path, bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "application/json")
	if toLeader {
		req.Header.Set(headerToLeader, "1")
	}
	n.sign(req, body, time.Now())
	resp, err := n.client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, maxClusterBody))
	if err != nil {
		return nil, err
	}
	if resp.StatusCode >= 300 {
		re := &remoteError{URL: base, Code: resp.StatusCode}
		var e struct {
			Message string `json:"message"`
		}
		if json.Unmarshal(b, &e) == nil && e.Message != "" {
			re.Message = e.Message
		} else {
			re.Message = strings.TrimSpace(string(b))
		}
		return nil, re
	}
	return b, nil
}

// leaderOnly answers 503 unless this member leads: members send such
// requests to the leader they know, and retry elsewhere on 503.
func (n *Node) leaderOnly(w http.ResponseWriter) bool {
	if n.raft.State() != raft.Leader {
		writeError(w, http.StatusServiceUnavailable, "this member is not the leader")
		return false
	}
	return true
}

func (n *Node) handleJoin(w http.ResponseWriter, r *http.Request, body []byte) {
	var m Member
	if err := decodeStrict(body, &m); err != nil {
		writeError(w, http.StatusBadRequest, "join: "+err.Error())
		return
	}
	m.AdminURL = strings.TrimSuffix(m.AdminURL, "/")
	if m.Name == "" {
		m.Name = m.ID
	}
	ctx, cancel := n.bound(r.Context())
	defer cancel()
	var err error
	if r.Header.Get(headerToLeader) != "" {
		if !n.leaderOnly(w) {
			return
		}
		err = n.addLocal(ctx, m)
	} else {
		err = n.onLeader(ctx, func(ctx context.Context) error { return n.addLocal(ctx, m) }, http.MethodPost, pathJoin, m, nil)
	}
	if err != nil {
		writeError(w, errorStatus(err), "join: "+err.Error())
		return
	}
	writeJSON(w, http.StatusOK, map[string]string{"joined": m.ID, "leader": n.Leader()})
}

func (n *Node) handleLeave(w http.ResponseWriter, r *http.Request, body []byte) {
	var req leaveRequest
	if err := decodeStrict(body, &req); err != nil || req.ID == "" {
		writeError(w, http.StatusBadRequest, `leave: want {"id": "<member id>"}`)
		return
	}
	ctx, cancel := n.bound(r.Context())
	defer cancel()
	var err error
	if r.Header.Get(headerToLeader) != "" {
		if !n.leaderOnly(w) {
			return
		}
		err = n.removeLocal(ctx, req.ID)
	} else {
		err = n.Remove(ctx, req.ID)
	}
	if err != nil {
		writeError(w, errorStatus(err), "leave: "+err.Error())
		return
	}
	writeJSON(w, http.StatusOK, map[string]string{"removed": req.ID})
}

func (n *Node) handleMembers(w http.ResponseWriter, r *http.Request) {
	ms, err := n.Members()
	if err != nil {
		writeError(w, errorStatus(err), err.Error())
		return
	}
	writeJSON(w, http.StatusOK, ms)
}

func (n *Node) handleCommit(w http.ResponseWriter, r *http.Request, body []byte) {
	var req commitRequest
	if err := decodeStrict(body, &req); err != nil {
		writeError(w, http.StatusBadRequest, "commit: "+err.Error())
		return
	}
	if !n.leaderOnly(w) {
		return
	}
	ctx, cancel := n.bound(r.Context())
	defer cancel()
	rev, err := n.commitLocal(ctx, req)
	if err != nil {
		writeError(w, errorStatus(err), "commit: "+err.Error())
		return
	}
	writeJSON(w, http.StatusOK, commitResponse{Revision: rev})
}

func (n *Node) handleReadIndex(w http.ResponseWriter, r *http.Request, _ []byte) {
	if !n.leaderOnly(w) {
		return
	}
	ctx, cancel := n.bound(r.Context())
	defer cancel()
	idx, err := n.readIndexLocal(ctx)
	if err != nil {
		writeError(w, errorStatus(err), "read index: "+err.Error())
		return
	}
	writeJSON(w, http.StatusOK, readIndexResponse{Index: idx})
}

func errorStatus(err error) int {
	var re *remoteError
	switch {
	case errors.Is(err, ErrBadRequest):
		return http.StatusBadRequest
	case errors.Is(err, ErrUnauthorized):
		return http.StatusUnauthorized
	case errors.Is(err, ErrRemoved):
		return http.StatusGone
	case errors.Is(err, context.DeadlineExceeded):
		return http.StatusGatewayTimeout
	case errors.As(err, &re) && re.Code < 500:
		return re.Code
	case retryable(err), errors.Is(err, raft.ErrRaftShutdown), errors.Is(err, sluice.ErrClosed):
		return http.StatusServiceUnavailable
	}
	return http.StatusInternalServerError
}

// decodeStrict decodes one JSON value and rejects unknown fields.
func decodeStrict(b []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return fmt.Errorf("%w: %w", ErrBadRequest, err)
	}
	if dec.More() {
		return fmt.Errorf("%w: trailing data after the JSON value", ErrBadRequest)
	}
	return nil
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		writeError(w, http.StatusInternalServerError, err.Error())
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	w.Write(append(b, '\n'))
}

func writeError(w http.ResponseWriter, code int, msg string) {
	b, _ := json.Marshal(map[string]any{"code": code, "message": msg})
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	w.Write(append(b, '\n'))
}
