// Package receiver turns push events from Git hosts into reconcile
// requests: a verified push to a repository and branch marks every
// HerokuNixApp whose flake follows that branch for a reconcile now, the way
// the reconcile-now annotation does by hand. The event never says what is
// built: the controller re-resolves the flake reference itself, and builds
// only when its revision moved.
//
// Endpoints (POST only):
//
//	/hooks/github   GitHub push events, X-Hub-Signature-256 (HMAC-SHA256)
//	/hooks/gitlab   GitLab push hooks, X-Gitlab-Token
//	/hooks/generic  {"repository": URL, "branch": NAME}, HMAC-SHA256 over
//	                "TIMESTAMP.BODY" in X-Herokunix-Signature, with
//	                X-Herokunix-Timestamp (Unix seconds, within 5 minutes)
//
// A refused request costs no build and no Heroku call: the checks run in
// order of cost (method, rate limits, size, signature, replay) before any
// resource is looked at.
package receiver

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/go-logr/logr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	herokunixv1 "github.com/herokunix/herokunix/api/v1alpha1"
)

// Defaults of Options.
const (
	DefaultMaxBody = 4 << 20
	// DefaultReplayWindow is how long a delivery id is remembered. It
	// exceeds the generic form's timestamp window, so a generic request is
	// refused as stale once its id is forgotten.
	DefaultReplayWindow = 30 * time.Minute
	maxDeliveries       = 50000
)

// Options configure a Handler.
type Options struct {
	// Client lists HerokuNixApps (the manager's cached client is best) and
	// patches their annotation.
	Client client.Client
	// Secrets gives the receiver's Secret data (keys SecretKeyGitHub, …).
	Secrets interface {
		Secrets(ctx context.Context, now time.Time) (map[string][]byte, error)
	}
	// Limits; zero: DefaultLimits.
	Limits Limits
	// MaxBody is the largest body read, in bytes; zero: DefaultMaxBody.
	MaxBody int64
	// ReplayWindow; zero: DefaultReplayWindow.
	ReplayWindow time.Duration
	// Now is the clock; default time.Now.
	Now func() time.Time
	Log logr.Logger
	// Observe, when set, is told of every answer: the sender (github,
	// gitlab, generic, or unknown), the answer's status and the resources
	// marked. The manager counts them in metrics.
	Observe func(provider, status string, marked int)
}

// Handler serves the webhook endpoints.
type Handler struct {
	opts       Options
	limits     *limiter
	deliveries *deliveries
}

// New makes a Handler.
func New(o Options) *Handler {
	if o.Limits == (Limits{}) {
		o.Limits = DefaultLimits
	}
	if o.MaxBody <= 0 {
		o.MaxBody = DefaultMaxBody
	}
	if o.ReplayWindow <= 0 {
		o.ReplayWindow = DefaultReplayWindow
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	return &Handler{opts: o, limits: newLimiter(o.Limits), deliveries: newDeliveries(o.ReplayWindow, maxDeliveries)}
}

// Response is the JSON body of every answer. It never names resources:
// the sender's delivery log is readable by people who may not see the
// cluster.
type Response struct {
	// Status: accepted, duplicate, ignored, pong, or an error.
	Status string `json:"status"`
	// Marked is how many resources were asked to reconcile.
	Marked int    `json:"marked"`
	Reason string `json:"reason,omitempty"`
}

func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	code, resp := h.serve(r)
	if h.opts.Observe != nil {
		provider := "unknown"
		if p, ok := providers[strings.TrimPrefix(r.URL.Path, "/hooks/")]; ok {
			provider = p.name
		}
		h.opts.Observe(provider, resp.Status, resp.Marked)
	}
	if code == http.StatusMethodNotAllowed {
		w.Header().Set("Allow", http.MethodPost)
	}
	if code == http.StatusTooManyRequests {
		w.Header().Set("Retry-After", "1")
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(resp)
}

func refuse(code int, reason string) (int, Response) {
	return code, Response{Status: strings.ToLower(strings.ReplaceAll(http.StatusText(code), " ", "-")), Reason: reason}
}

// serve decides the answer; it is ServeHTTP without the writing.
func (h *Handler) serve(r *http.Request) (int, Response) {
	name, ok := strings.CutPrefix(r.URL.Path, "/hooks/")
	p, known := providers[name]
	if !ok || !known {
		return refuse(http.StatusNotFound, "endpoints are /hooks/github, /hooks/gitlab and /hooks/generic")
	}
	if r.Method != http.MethodPost {
		return refuse(http.StatusMethodNotAllowed, "only POST")
	}
	now := h.opts.Now()
	if !h.limits.allow(sourceOf(r), now) {
		return refuse(http.StatusTooManyRequests, "rate limited")
	}
	if r.ContentLength > h.opts.MaxBody {
		return refuse(http.StatusRequestEntityTooLarge, fmt.Sprintf("body over %d bytes", h.opts.MaxBody))
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, h.opts.MaxBody+1))
	if err != nil {
		return refuse(http.StatusBadRequest, "reading body")
	}
	if int64(len(body)) > h.opts.MaxBody {
		return refuse(http.StatusRequestEntityTooLarge, fmt.Sprintf("body over %d bytes", h.opts.MaxBody))
	}
	ctx, cancel := context.WithTimeout(r.Context(), 30*time.Second)
	defer cancel()
	secrets, err := h.opts.Secrets.Secrets(ctx, now)
	if err != nil {
		h.opts.Log.Error(err, "webhook secrets unavailable")
		return refuse(http.StatusServiceUnavailable, "secrets unavailable")
	}
	secret := secrets[p.name]
	if len(secret) == 0 {
		return refuse(http.StatusNotFound, p.name+" events are not enabled (no key "+p.name+" in the receiver's Secret)")
	}
	delivery, err := p.verify(r.Header, body, secret, now)
	if err != nil {
		h.opts.Log.V(1).Info("webhook refused", "provider", p.name, "source", sourceOf(r), "reason", err.Error())
		return refuse(http.StatusUnauthorized, err.Error())
	}
	switch kind, ev := p.kind(r.Header); kind {
	case kindPing:
		return http.StatusOK, Response{Status: "pong"}
	case kindOther:
		return http.StatusAccepted, Response{Status: "ignored", Reason: fmt.Sprintf("event %q is not a push", ev)}
	}
	// Only a verified request reaches the replay table, so unsigned
	// requests cannot fill it or claim ids ahead of the sender.
	id := p.name + "/" + delivery
	switch h.deliveries.claim(id, now) {
	case duplicate:
		return http.StatusOK, Response{Status: "duplicate", Reason: "delivery already handled"}
	case full:
		return refuse(http.StatusServiceUnavailable, "too many deliveries to remember; retry later")
	}
	marked, err := h.handle(ctx, p, body, now)
	if err != nil {
		h.deliveries.release(id)
		var bad badEvent
		if errors.As(err, &bad) {
			return refuse(http.StatusBadRequest, bad.Error())
		}
		h.opts.Log.Error(err, "webhook: requesting reconciles", "provider", p.name)
		return refuse(http.StatusInternalServerError, "requesting reconciles failed; retry")
	}
	h.deliveries.done(id, now)
	if marked < 0 {
		return http.StatusAccepted, Response{Status: "ignored", Reason: "not a push to a branch"}
	}
	return http.StatusAccepted, Response{Status: "accepted", Marked: marked}
}

// badEvent is a verified payload that does not read as a push.
type badEvent struct{ error }

// handle parses a verified push and marks the resources that follow its
// branch. It returns -1 for pushes that are not to a branch (tags,
// deletions).
func (h *Handler) handle(ctx context.Context, p provider, body []byte, now time.Time) (int, error) {
	push, err := p.parse(body)
	if err != nil {
		return 0, badEvent{err}
	}
	if push.Branch == "" || push.Deleted {
		return -1, nil
	}
	var apps herokunixv1.HerokuNixAppList
	if err := h.opts.Client.List(ctx, &apps); err != nil {
		return 0, fmt.Errorf("listing HerokuNixApps: %w", err)
	}
	following := Following(apps.Items, push)
	value := now.UTC().Format(time.RFC3339Nano)
	for _, app := range following {
		if err := markReconcile(ctx, h.opts.Client, app, value); err != nil {
			return 0, err
		}
	}
	h.opts.Log.Info("push event", "provider", p.name, "repository", push.Key(), "branch", push.Branch, "marked", len(following))
	return len(following), nil
}

// sourceOf is the client address a per-source limit applies to. Behind a
// proxy or load balancer that does not keep client addresses, all
// requests share its address (and the global limit governs).
func sourceOf(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}
