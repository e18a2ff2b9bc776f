// Package heroku is herokunix's thin client for the Heroku Platform API and
// container registry: app info, the latest release, releasing images through
// the docker-releases formation PATCH, release info, formation, and registry
// credentials.
//
// The client never sleeps and never retries: a 429, a 5xx, a transport
// failure or an empty client-side budget becomes an *Error with a RetryAfter
// that the reconciler turns into a requeue. Every response's
// RateLimit-Remaining is recorded. The API key never appears in an error
// string, a log line or a formatted value.
package heroku

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	hk "github.com/heroku/heroku-go/v5"
)

// Defaults for Options.
const (
	DefaultBaseURL         = "https://api.heroku.com"
	DefaultRegistryHost    = "registry.heroku.com"
	DefaultRequestsPerHour = 2250 // half of Heroku's 4,500 per account
	DefaultRequestTimeout  = 30 * time.Second
	DefaultUserAgent       = "herokunix"
)

// Accept headers of the Platform API.
const (
	acceptV3             = "application/vnd.heroku+json; version=3"
	acceptDockerReleases = "application/vnd.heroku+json; version=3.docker-releases"
)

// Observer receives call metrics; every method must be cheap and safe for
// concurrent use.
type Observer interface {
	// ObserveCall is called once per call with the HTTP status, or 0 when no
	// answer came (transport error, client-side limit).
	ObserveCall(operation string, statusCode int)
	// ObserveRateLimitRemaining is called with every RateLimit-Remaining seen.
	ObserveRateLimitRemaining(n int)
}

// Options configure a Client. Its String and GoString never show the key.
type Options struct {
	APIKey       string
	BaseURL      string // default https://api.heroku.com
	RegistryHost string // default registry.heroku.com
	// HTTPClient is used as is; the default has a timeout and plain
	// transport (not heroku-go's retrying transport, which blocks).
	HTTPClient *http.Client
	// RequestsPerHour is this client's share of the account's 4,500 an
	// hour; the bucket holds that many and refills at that rate. When it
	// is empty calls fail at once with a KindRateLimited error.
	RequestsPerHour int
	UserAgent       string
	// RequestTimeout bounds a call whose context has no deadline.
	RequestTimeout time.Duration
	Observer       Observer
	// Now is the clock of the limiter and Retry-After dates; default time.Now.
	Now func() time.Time
}

// String hides the API key.
func (o Options) String() string {
	return fmt.Sprintf("heroku.Options{APIKey:%s BaseURL:%q RegistryHost:%q RequestsPerHour:%d UserAgent:%q}",
		redactedMark(o.APIKey), o.BaseURL, o.RegistryHost, o.RequestsPerHour, o.UserAgent)
}

// GoString hides the API key.
func (o Options) GoString() string { return o.String() }

func redactedMark(key string) string {
	if key == "" {
		return "<empty>"
	}
	return "<redacted>"
}

// Client talks to one Heroku account. It is safe for concurrent use.
type Client struct {
	key          string
	svc          *hk.Service
	http         *http.Client
	registryHost string
	userAgent    string
	timeout      time.Duration
	observer     Observer
	now          func() time.Time
	limiter      *bucket

	mu        sync.Mutex
	remaining int
	seen      bool
	// blockedUntil is set by a 429: until then calls fail without a request.
	blockedUntil time.Time
}

// New checks opts and builds a Client.
func New(opts Options) (*Client, error) {
	if opts.APIKey == "" {
		return nil, errors.New("heroku: an API key is required")
	}
	if strings.ContainsAny(opts.APIKey, "\r\n") {
		return nil, errors.New("heroku: the API key contains a line break")
	}
	base := opts.BaseURL
	if base == "" {
		base = DefaultBaseURL
	}
	u, err := url.Parse(base)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("heroku: base URL %q is not an http(s) URL", base)
	}
	c := &Client{
		key:          opts.APIKey,
		http:         opts.HTTPClient,
		registryHost: opts.RegistryHost,
		userAgent:    opts.UserAgent,
		timeout:      opts.RequestTimeout,
		observer:     opts.Observer,
		now:          opts.Now,
	}
	if c.http == nil {
		c.http = &http.Client{Timeout: 2 * DefaultRequestTimeout}
	}
	if c.registryHost == "" {
		c.registryHost = DefaultRegistryHost
	}
	if c.userAgent == "" {
		c.userAgent = DefaultUserAgent
	}
	if c.timeout <= 0 {
		c.timeout = DefaultRequestTimeout
	}
	if c.now == nil {
		c.now = time.Now
	}
	rph := opts.RequestsPerHour
	if rph <= 0 {
		rph = DefaultRequestsPerHour
	}
	c.limiter = newBucket(rph, c.now())
	c.svc = hk.NewService(c.http)
	c.svc.URL = strings.TrimRight(base, "/")
	return c, nil
}

// String hides the API key.
func (c *Client) String() string {
	return fmt.Sprintf("heroku.Client{BaseURL:%q RegistryHost:%q}", c.svc.URL, c.registryHost)
}

// GoString hides the API key.
func (c *Client) GoString() string { return c.String() }

// RegistryHost is the registry images are pushed to.
func (c *Client) RegistryHost() string { return c.registryHost }

// RegistryAuth gives go-containerregistry the registry credentials: Basic
// with user "_" and the API key as password. The value prints redacted.
func (c *Client) RegistryAuth() authn.Authenticator { return RegistryAuth(c.key) }

// RegistryAuth is the registry credentials for the API key key: Basic with
// user "_" and the key as password. The value prints redacted (String,
// GoString), so it can be logged or wrapped into errors without the key.
func RegistryAuth(key string) authn.Authenticator { return registryAuth{key: key} }

type registryAuth struct{ key string }

func (a registryAuth) Authorization() (*authn.AuthConfig, error) {
	return &authn.AuthConfig{Username: "_", Password: a.key}, nil
}
func (a registryAuth) String() string   { return "heroku registry credentials <redacted>" }
func (a registryAuth) GoString() string { return a.String() }

// RateLimitRemaining is the last RateLimit-Remaining Heroku sent.
func (c *Client) RateLimitRemaining() (int, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.remaining, c.seen
}

// request is one Platform API call.
type request struct {
	op     string // metric name, e.g. "release.list"
	method string
	path   string
	body   any
	accept string
	rng    string // Range header
	// free marks calls Heroku does not count (GET /account/rate-limits).
	free bool
	// answer, when set, receives the status and headers of a 2xx answer
	// (paging reads Next-Range).
	answer *answer
}

// answer is what a call keeps of a 2xx response besides its body.
type answer struct {
	status int
	header http.Header
}

const (
	maxErrorBody   = 64 << 10
	maxSuccessBody = 16 << 20
)

// do runs one request and decodes a 2xx answer into v. It never retries.
func (c *Client) do(ctx context.Context, r request, v any) (err error) {
	status := 0
	defer func() { c.observeCall(r.op, status) }()

	if !r.free {
		if err := c.admit(1); err != nil {
			return err
		}
	}
	parent := ctx
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, c.timeout)
		defer cancel()
	}
	req, err := c.svc.NewRequest(ctx, r.method, r.path, r.body, nil)
	if err != nil {
		return fmt.Errorf("heroku: %s: build request: %w", r.op, err)
	}
	accept := r.accept
	if accept == "" {
		accept = acceptV3
	}
	req.Header.Set("Accept", accept)
	req.Header.Set("Authorization", "Bearer "+c.key)
	req.Header.Set("User-Agent", c.userAgent)
	req.Header.Set("Request-Id", newRequestID())
	if r.rng != "" {
		req.Header.Set("Range", r.rng)
	}

	resp, err := c.http.Do(req)
	if err != nil {
		if pErr := parent.Err(); pErr != nil {
			// The caller gave up: not Heroku's fault, no retry hint.
			return fmt.Errorf("heroku: %s: %w", r.op, pErr)
		}
		if ctxErr := ctx.Err(); ctxErr != nil {
			// Our own per-request timeout.
			return &Error{Kind: KindUnavailable, Message: fmt.Sprintf("%s: %v", r.op, ctxErr),
				RetryAfter: defaultUnavailableRetry, cause: ctxErr}
		}
		return &Error{Kind: KindUnavailable, Message: c.redact(fmt.Sprintf("%s: %v", r.op, err)),
			RetryAfter: defaultUnavailableRetry, cause: err}
	}
	defer resp.Body.Close()
	status = resp.StatusCode
	c.recordRemaining(resp.Header)

	if r.answer != nil {
		r.answer.status, r.answer.header = resp.StatusCode, resp.Header
	}
	if resp.StatusCode/100 != 2 {
		body, _ := io.ReadAll(io.LimitReader(resp.Body, maxErrorBody))
		e := parseError(resp.StatusCode, resp.Header, body, c.now())
		e.Message = c.redact(e.Message)
		e.ID = c.redact(e.ID)
		if e.Kind == KindRateLimited {
			c.block(e.RetryAfter)
		}
		return e
	}
	if v == nil {
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, maxSuccessBody))
		return nil
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxSuccessBody))
	if err != nil {
		return &Error{Kind: KindUnavailable, StatusCode: status, RequestID: resp.Header.Get("Request-Id"),
			Message: c.redact(fmt.Sprintf("%s: read answer: %v", r.op, err)), RetryAfter: defaultUnavailableRetry, cause: err}
	}
	if err := json.Unmarshal(body, v); err != nil {
		return &Error{Kind: KindOther, StatusCode: status, RequestID: resp.Header.Get("Request-Id"),
			Message: fmt.Sprintf("%s: answer is not the expected JSON: %v", r.op, err)}
	}
	return nil
}

// admit takes n tokens from the client-side budget, or says how long to wait.
func (c *Client) admit(n int) error {
	now := c.now()
	c.mu.Lock()
	blocked := c.blockedUntil
	c.mu.Unlock()
	if now.Before(blocked) {
		return &Error{Kind: KindRateLimited, ID: "rate_limit",
			Message: "Heroku answered 429 recently; not calling it again yet", RetryAfter: blocked.Sub(now)}
	}
	if wait, ok := c.limiter.take(now, n); !ok {
		return &Error{Kind: KindRateLimited, ID: "rate_limit",
			Message: "herokunix's share of the Heroku rate limit is spent", RetryAfter: wait}
	}
	return nil
}

func (c *Client) block(d time.Duration) {
	until := c.now().Add(d)
	c.mu.Lock()
	if until.After(c.blockedUntil) {
		c.blockedUntil = until
	}
	c.mu.Unlock()
}

func (c *Client) recordRemaining(h http.Header) {
	n, ok := parseRemaining(h)
	if !ok {
		return
	}
	c.mu.Lock()
	c.remaining, c.seen = n, true
	c.mu.Unlock()
	if c.observer != nil {
		c.observer.ObserveRateLimitRemaining(n)
	}
}

func (c *Client) observeCall(op string, status int) {
	if c.observer != nil {
		c.observer.ObserveCall(op, status)
	}
}

// redact removes the key from text that came from elsewhere.
func (c *Client) redact(s string) string {
	if c.key == "" {
		return s
	}
	return strings.ReplaceAll(s, c.key, "<redacted>")
}

func newRequestID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:])
}

// bucket is the client-side token bucket: capacity tokens, refilled at
// capacity per hour. take never blocks.
type bucket struct {
	mu       sync.Mutex
	capacity float64
	perSec   float64
	tokens   float64
	last     time.Time
}

func newBucket(perHour int, now time.Time) *bucket {
	return &bucket{capacity: float64(perHour), perSec: float64(perHour) / 3600, tokens: float64(perHour), last: now}
}

func (b *bucket) refill(now time.Time) {
	if el := now.Sub(b.last).Seconds(); el > 0 {
		b.tokens = min(b.capacity, b.tokens+el*b.perSec)
	}
	b.last = now
}

// take removes n tokens, or reports how long until n are there.
func (b *bucket) take(now time.Time, n int) (time.Duration, bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.refill(now)
	wait, ok := b.waitFor(float64(n))
	if ok {
		b.tokens -= float64(n)
	}
	return wait, ok
}

// peek reports whether n tokens are there, and if not how long until they are.
func (b *bucket) peek(now time.Time, n int) (time.Duration, bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.refill(now)
	return b.waitFor(float64(n))
}

func (b *bucket) waitFor(need float64) (time.Duration, bool) {
	if b.tokens >= need {
		return 0, true
	}
	wait := time.Duration((need - b.tokens) / b.perSec * float64(time.Second))
	return max(wait, time.Second), false
}
